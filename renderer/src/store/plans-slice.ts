// Backup plans (source, repository, schedule, retention, container) and whether schedules are paused.

import type { Params } from '../../../protocol/messages.ts';
import type { Plan } from '../../../protocol/model.ts';
import type { SliceCreator } from './app-store.ts';

export type PlanDraft = Params<'plans.save'>;

export interface PlansSlice {
  plans: Plan[];
  plansLoaded: boolean;
  schedulesPaused: boolean;
  engineVersion: string | null;
  enginePrivileged: boolean | null;
  loadPlans(): Promise<void>;
  loadStatus(): Promise<void>;
  savePlan(draft: PlanDraft): Promise<Plan | null>;
  deletePlan(id: string): Promise<void>;
  runPlan(id: string): Promise<void>;
  setSchedulesPaused(paused: boolean): Promise<void>;
  pruneRepo(repo: string, retention: Plan['retention'], dryRun: boolean): Promise<void>;
  initRepo(repo: string, encrypted: boolean): Promise<{ repo: string } | null>;
}

export const createPlansSlice: SliceCreator<PlansSlice> = (set, get, engine) => ({
  plans: [],
  plansLoaded: false,
  schedulesPaused: false,
  engineVersion: null,
  enginePrivileged: null,
  async loadPlans() {
    const plans = await get().attempt('plans', () => engine.call('plans.list', {}));
    if (!plans) return;
    set({ plans, plansLoaded: true });
    for (const plan of plans)
      if (!get().repos.includes(plan.repo)) set({ repos: [...get().repos, plan.repo] });
    if (!get().currentRepo && plans[0]) get().setCurrentRepo(plans[0].repo);
  },
  async loadStatus() {
    const status = await get().attempt('status', () => engine.call('engine.status', {}));
    if (!status) return;
    set({
      schedulesPaused: status.schedulesPaused,
      engineVersion: status.version,
      enginePrivileged: status.privileged,
    });
    // The engine's default repository (serve --repo) and its named ones join the list; the default becomes
    // current when the user has not chosen one.
    const known = [status.defaultRepo, ...(status.repositories ?? []).map((r) => r.path)];
    for (const repo of known) if (repo && !get().repos.includes(repo)) set({ repos: [...get().repos, repo] });
    if (!get().currentRepo && status.defaultRepo) get().setCurrentRepo(status.defaultRepo);
  },
  async savePlan(draft) {
    const plan = await get().attempt('plan.save', () => engine.call('plans.save', draft));
    if (plan) {
      const others = get().plans.filter((p) => p.id !== plan.id);
      set({ plans: [...others, plan] });
      if (!get().repos.includes(plan.repo)) get().addRepo(plan.repo);
    }
    return plan;
  },
  async deletePlan(id) {
    const done = await get().attempt(`plan.delete:${id}`, () => engine.call('plans.delete', { id }));
    if (done) set({ plans: get().plans.filter((p) => p.id !== id) });
  },
  async runPlan(id) {
    const job = await get().attempt(`plan.run:${id}`, () => engine.call('plans.runNow', { id }));
    if (job) {
      get().applyJob(job);
      get().followJob(job.id);
      get().setView('live');
    }
  },
  async setSchedulesPaused(paused) {
    const result = await get().attempt('schedules', () => engine.call('schedules.setPaused', { paused }));
    if (result) set({ schedulesPaused: result.paused });
  },
  async initRepo(repo, encrypted) {
    const result = await get().attempt('repo.init', () => engine.call('repo.init', { repo, encrypted }));
    if (result) get().addRepo(result.repo);
    return result;
  },
  async pruneRepo(repo, retention, dryRun) {
    const job = await get().attempt('prune', () => engine.call('prune.start', { repo, retention, dryRun }));
    if (job) get().applyJob(job);
  },
});
