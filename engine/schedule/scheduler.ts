// Runs plans on their schedules while the engine runs, with the UI closed. A plan's next run time is
// persisted, so a run missed while the machine slept (or the engine was stopped) happens at the next
// start; a watchdog catches timers that fire late after a suspend. Runs of one plan never overlap: a run
// due while the previous one still runs is skipped and said so. Each outcome raises 'plan.ran'.
import { randomUUID } from 'node:crypto';
import { Cron } from 'croner';
import type { Plan } from '../../protocol/model.ts';
import type { EventBus } from '../api/events.ts';
import type { StateStore } from '../config/state.ts';
import { cronPattern, nextRunAfter } from './presets.ts';

/** Runs one plan to its end (backup, then retention); resolves with its outcome, never rejects. */
export type PlanRunner = (plan: Plan) => Promise<{ ok: boolean; message: string }>;

/** How often the watchdog looks for runs that are due but did not fire (suspend, clock jumps). */
const WATCHDOG_MS = 15_000;
/** A due run whose timer is later than this is taken over by the watchdog. */
const LATE_MS = 5_000;

export type PlanDraft = Omit<Plan, 'lastRun' | 'nextRun'>;

export class Scheduler {
  #state: StateStore;
  #events: EventBus;
  #runPlan: PlanRunner;
  #timers = new Map<string, Cron>();
  #running = new Map<string, Promise<void>>();
  #watchdog: NodeJS.Timeout | null = null;
  #started = false;

  constructor(state: StateStore, events: EventBus, runPlan: PlanRunner) {
    this.#state = state;
    this.#events = events;
    this.#runPlan = runPlan;
  }

  get paused(): boolean {
    return this.#state.config.schedulesPaused;
  }

  /** Starts the timers; runs now every plan whose persisted next run passed while the engine was down. */
  async start(): Promise<void> {
    this.#started = true;
    const missed: Plan[] = [];
    const at = Date.now();
    for (const plan of this.#state.plans) {
      if (!this.paused && plan.enabled && plan.nextRun && Date.parse(plan.nextRun) <= at) missed.push(plan);
      this.#arm(plan);
    }
    await this.#state.savePlans();
    for (const plan of missed) void this.runNow(plan.id, 'missed');
    this.#watchdog = setInterval(() => this.#catchUp(), WATCHDOG_MS);
    this.#watchdog.unref();
  }

  async stop(): Promise<void> {
    this.#started = false;
    if (this.#watchdog) clearInterval(this.#watchdog);
    for (const timer of this.#timers.values()) timer.stop();
    this.#timers.clear();
    await Promise.all(this.#running.values());
  }

  list(): Plan[] {
    return this.#state.plans.map((plan) => ({ ...plan }));
  }

  /** The earliest next run of any enabled plan, or null. */
  nextRun(): string | null {
    if (this.paused) return null;
    const times = this.#state.plans
      .filter((plan) => plan.enabled && plan.nextRun)
      .map((plan) => plan.nextRun!)
      .sort();
    return times[0] ?? null;
  }

  /** Creates or replaces a plan (by id; an empty id makes a new one). Throws ScheduleError on a bad schedule. */
  async save(draft: PlanDraft): Promise<Plan> {
    if (draft.schedule) cronPattern(draft.schedule);
    const existing = this.#state.plans.find((plan) => plan.id === draft.id);
    const plan: Plan = {
      ...draft,
      id: draft.id || randomUUID(),
      lastRun: existing?.lastRun ?? null,
      nextRun: null,
    };
    this.#state.plans = [...this.#state.plans.filter((other) => other.id !== plan.id), plan];
    this.#arm(plan);
    await this.#state.savePlans();
    this.#events.emit('plans.changed', {});
    return { ...plan };
  }

  async remove(id: string): Promise<boolean> {
    const before = this.#state.plans.length;
    this.#state.plans = this.#state.plans.filter((plan) => plan.id !== id);
    this.#timers.get(id)?.stop();
    this.#timers.delete(id);
    if (this.#state.plans.length === before) return false;
    await this.#state.savePlans();
    this.#events.emit('plans.changed', {});
    return true;
  }

  async setPaused(paused: boolean): Promise<void> {
    this.#state.config.schedulesPaused = paused;
    await this.#state.saveConfig();
    for (const plan of this.#state.plans) this.#arm(plan);
    await this.#state.savePlans();
    this.#events.emit('plans.changed', {});
  }

  /**
   * Runs a plan now (a schedule firing, a missed run, or the user). Returns false without running when
   * the plan's previous run has not finished: runs never overlap.
   */
  runNow(id: string, why: 'schedule' | 'missed' | 'user'): Promise<boolean> {
    const plan = this.#state.plans.find((candidate) => candidate.id === id);
    if (!plan) return Promise.resolve(false);
    if (this.#running.has(id)) return Promise.resolve(false);
    const run = this.#runPlan(plan)
      .catch((error: Error) => ({ ok: false, message: error.message }))
      .then(async (outcome) => {
        const time = new Date().toISOString();
        const message =
          why === 'missed' ? `${outcome.message} (run missed while the engine was stopped)` : outcome.message;
        const current = this.#state.plans.find((candidate) => candidate.id === id);
        if (current) {
          current.lastRun = { time, ok: outcome.ok, message };
          this.#arm(current);
          await this.#state.savePlans().catch(() => {});
        }
        this.#events.emit(
          'plan.ran',
          { planId: id, name: plan.name, ok: outcome.ok, message, time },
          plan.owner ?? null,
        );
        this.#events.emit('plans.changed', {});
      })
      .finally(() => this.#running.delete(id));
    this.#running.set(id, run);
    return run.then(() => true);
  }

  isRunning(id: string): boolean {
    return this.#running.has(id);
  }

  /** (Re)creates the timer of one plan and records its next run time. */
  #arm(plan: Plan): void {
    this.#timers.get(plan.id)?.stop();
    this.#timers.delete(plan.id);
    if (!plan.enabled || !plan.schedule || this.paused) {
      plan.nextRun = null;
      return;
    }
    if (!this.#started) {
      // Not running timers (a one-shot CLI engine): keep a persisted time, so a missed run stays visible.
      plan.nextRun ??= nextRunAfter(plan.schedule, new Date())?.toISOString() ?? null;
      return;
    }
    const timer = new Cron(cronPattern(plan.schedule), { protect: true }, () => {
      void this.#fire(plan.id);
    });
    this.#timers.set(plan.id, timer);
    plan.nextRun = timer.nextRun()?.toISOString() ?? null;
  }

  async #fire(id: string): Promise<void> {
    const plan = this.#state.plans.find((candidate) => candidate.id === id);
    if (!plan) return;
    if (this.#running.has(id)) {
      // The previous run is still going: skip this one, say so, and move the next run on.
      const time = new Date().toISOString();
      const message = 'Skipped: the previous run of this plan had not finished.';
      this.#events.emit(
        'plan.ran',
        { planId: id, name: plan.name, ok: false, message, time },
        plan.owner ?? null,
      );
      plan.nextRun = this.#timers.get(id)?.nextRun()?.toISOString() ?? null;
      await this.#state.savePlans().catch(() => {});
      return;
    }
    await this.runNow(id, 'schedule');
  }

  #catchUp(): void {
    if (this.paused) return;
    const at = Date.now();
    for (const plan of this.#state.plans) {
      if (!plan.enabled || !plan.nextRun || this.#running.has(plan.id)) continue;
      if (Date.parse(plan.nextRun) + LATE_MS < at) void this.runNow(plan.id, 'schedule');
    }
  }
}
