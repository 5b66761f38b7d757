// Runs plans on their schedules while the engine runs, with the UI closed. A plan's next run time is
// persisted, so a run missed while the machine slept (or the engine was stopped) happens at the next
// start; a watchdog catches timers that fire late after a suspend. Runs of one plan never overlap: a run
// due while the previous one still runs is skipped and said so. Each outcome raises 'plan.ran'. Time comes from
// a Clock (tests drive it), so every timer here is the clock's.
import { randomUUID } from 'node:crypto';
import { type Clock, systemClock, type TimerHandle } from '../../protocol/clock.ts';
import type { Plan } from '../../protocol/model.ts';
import type { StateStore } from '../config/state.ts';
import type { EventBus } from '../jobs/events.ts';
import { cronPattern, nextRunAfter } from './presets.ts';

/** Runs one plan to its end (backup, then retention); resolves with its outcome, never rejects. */
export type PlanRunner = (plan: Plan) => Promise<{ ok: boolean; message: string }>;

/** How often the watchdog looks for runs that are due but did not fire (suspend, clock jumps). */
const WATCHDOG_MS = 15_000;
/** A due run whose timer is later than this is taken over by the watchdog. */
const LATE_MS = 5_000;
/** Longest single wait: a run further off is reached in steps (timers overflow past 2^31 ms, clocks jump). */
const MAX_WAIT_MS = 3600_000;

export type PlanDraft = Omit<Plan, 'lastRun' | 'nextRun'>;

export class Scheduler {
  #state: StateStore;
  #events: EventBus;
  #runPlan: PlanRunner;
  #clock: Clock;
  /** Plan id → the timer of its next run. */
  #timers = new Map<string, TimerHandle>();
  #running = new Map<string, Promise<void>>();
  #watchdog: TimerHandle | null = null;
  #started = false;

  constructor(state: StateStore, events: EventBus, runPlan: PlanRunner, clock: Clock = systemClock) {
    this.#state = state;
    this.#events = events;
    this.#runPlan = runPlan;
    this.#clock = clock;
  }

  get paused(): boolean {
    return this.#state.config.schedulesPaused;
  }

  /** Starts the timers; runs now every plan whose persisted next run passed while the engine was down. */
  async start(): Promise<void> {
    this.#started = true;
    const missed: Plan[] = [];
    const at = this.#clock.now();
    for (const plan of this.#state.plans) {
      if (!this.paused && plan.enabled && plan.nextRun && Date.parse(plan.nextRun) <= at) missed.push(plan);
      this.#arm(plan);
    }
    await this.#state.savePlans();
    for (const plan of missed) void this.runNow(plan.id, 'missed');
    this.#watch();
  }

  async stop(): Promise<void> {
    this.#started = false;
    if (this.#watchdog) this.#clock.clearTimeout(this.#watchdog);
    this.#watchdog = null;
    for (const timer of this.#timers.values()) this.#clock.clearTimeout(timer);
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
    this.#disarm(id);
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
        const time = new Date(this.#clock.now()).toISOString();
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
    this.#disarm(plan.id);
    if (!plan.enabled || !plan.schedule || this.paused) {
      plan.nextRun = null;
      return;
    }
    const now = new Date(this.#clock.now());
    if (!this.#started) {
      // Not running timers (a one-shot CLI engine): keep a persisted time, so a missed run stays visible.
      plan.nextRun ??= nextRunAfter(plan.schedule, now)?.toISOString() ?? null;
      return;
    }
    const next = nextRunAfter(plan.schedule, now);
    plan.nextRun = next?.toISOString() ?? null;
    if (next) this.#wakeAt(plan.id, next.getTime());
  }

  #disarm(id: string): void {
    const timer = this.#timers.get(id);
    if (timer) this.#clock.clearTimeout(timer);
    this.#timers.delete(id);
  }

  /** Fires plan `id` at `due`, waiting in steps of at most MAX_WAIT_MS. */
  #wakeAt(id: string, due: number): void {
    const wait = Math.min(Math.max(0, due - this.#clock.now()), MAX_WAIT_MS);
    const timer = this.#clock.setTimeout(() => {
      if (this.#timers.get(id) !== timer) return;
      this.#timers.delete(id);
      if (this.#clock.now() < due) this.#wakeAt(id, due);
      else void this.#fire(id, due);
    }, wait);
    this.#timers.set(id, timer);
  }

  /** A plan's run time came: the next one is armed at once, so a run that lasts long skips the ones it covers. */
  async #fire(id: string, due: number): Promise<void> {
    const plan = this.#state.plans.find((candidate) => candidate.id === id);
    if (!plan?.schedule) return;
    const next = nextRunAfter(plan.schedule, new Date(Math.max(due, this.#clock.now())));
    plan.nextRun = next?.toISOString() ?? null;
    if (next) this.#wakeAt(id, next.getTime());
    if (this.#running.has(id)) {
      // The previous run is still going: skip this one, say so, and keep the next run.
      const time = new Date(this.#clock.now()).toISOString();
      const message = 'Skipped: the previous run of this plan had not finished.';
      this.#events.emit(
        'plan.ran',
        { planId: id, name: plan.name, ok: false, message, time },
        plan.owner ?? null,
      );
      await this.#state.savePlans().catch(() => {});
      return;
    }
    await this.runNow(id, 'schedule');
  }

  /** Runs the watchdog every WATCHDOG_MS while started. */
  #watch(): void {
    this.#watchdog = this.#clock.setTimeout(() => {
      if (!this.#started) return;
      this.#catchUp();
      this.#watch();
    }, WATCHDOG_MS);
  }

  #catchUp(): void {
    if (this.paused) return;
    const at = this.#clock.now();
    for (const plan of this.#state.plans) {
      if (!plan.enabled || !plan.nextRun || this.#running.has(plan.id)) continue;
      if (Date.parse(plan.nextRun) + LATE_MS < at) void this.runNow(plan.id, 'schedule');
    }
  }
}
