// `diskline schedule`: the plans the engine runs on their own — list, add, remove, run now, pause, resume.
import { resolve } from 'node:path';
import type { EventData } from '../../../protocol/messages.ts';
import type { Plan } from '../../../protocol/model.ts';
import { type ClosableEngineClient, connectEngine } from '../../api/client.ts';
import { CONTAINER_SYNTAX, containerOption } from '../container-option.ts';
import { parseRetention, retentionOptions } from '../retention-options.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

async function findPlan(client: ClosableEngineClient, ref: string | undefined): Promise<Plan> {
  if (!ref) throw new UsageError('name the plan (its id or name).');
  const plans = await client.call('plans.list', {});
  const plan =
    plans.find((candidate) => candidate.id === ref) ?? plans.find((candidate) => candidate.name === ref);
  if (!plan) throw new Error(`No plan '${ref}'; 'diskline schedule list' shows them.`);
  return plan;
}

function describe(plan: Plan): string {
  const keep = Object.entries(plan.retention)
    .filter(([, count]) => count !== undefined)
    .map(([rule, count]) => `${rule.replace(/^keep/, '').toLowerCase()} ${count}`)
    .join(', ');
  const last = plan.lastRun
    ? `${plan.lastRun.time} ${plan.lastRun.ok ? 'ok' : 'FAILED'}: ${plan.lastRun.message}`
    : 'never';
  return [
    `${plan.name}  (${plan.id})${plan.enabled ? '' : '  [disabled]'}`,
    `  ${plan.source} → ${plan.repo}`,
    `  schedule: ${plan.schedule ?? 'manual'}   next: ${plan.nextRun ?? '-'}   keep: ${keep || 'all'}`,
    `  last run: ${last}`,
  ].join('\n');
}

export const verb: Verb = {
  usage: 'schedule list|add|remove|run|pause|resume [...]',
  summary: 'Manage backup plans that run on a schedule (with retention after each run)',
  help: `Subcommands:
  list [--json]                       the plans, their next and last runs
  add --name N --source S --repo R --at WHEN [--keep-last N] [--keep-hourly N] [--keep-daily N]
      [--keep-weekly N] [--keep-monthly N] [--keep-yearly N] [--container SPEC] [--disabled] [--no-resume]
      [--json]
        WHEN: '@hourly', 'daily 02:30', 'weekly mon 03:00', or a cron expression (seconds first if 6 fields)
        SPEC: ${CONTAINER_SYNTAX}, as for backup (default memory:64M)
        --no-resume: each run starts afresh instead of taking over an interrupted backup
  remove ID|NAME                      delete a plan (its restore points stay)
  run ID|NAME                         run a plan now and wait for its outcome (exit 0 only if it succeeded)
  pause | resume                      stop or restart every schedule
Talks to the daemon when its socket answers; otherwise edits the engine's state directly (and 'run' runs here).`,
  async run(args) {
    const [sub, ...rest] = args;
    const { values, positionals } = parseVerbArgs(rest, {
      json: { type: 'boolean' },
      name: { type: 'string' },
      source: { type: 'string' },
      repo: { type: 'string' },
      at: { type: 'string' },
      ...retentionOptions,
      container: { type: 'string' },
      'no-resume': { type: 'boolean' },
      disabled: { type: 'boolean' },
    });
    if (!sub || !['list', 'add', 'remove', 'run', 'pause', 'resume'].includes(sub)) {
      throw new UsageError(
        sub ? `unknown subcommand '${sub}'.` : 'say what to do: list, add, remove, run, pause or resume.',
      );
    }
    const client = await connectEngine();
    try {
      if (sub === 'list') {
        const plans = await client.call('plans.list', {});
        if (values.json) process.stdout.write(`${JSON.stringify(plans)}\n`);
        else process.stdout.write(plans.length ? `${plans.map(describe).join('\n\n')}\n` : 'No plans.\n');
        return;
      }
      if (sub === 'add') {
        for (const required of ['name', 'source', 'repo', 'at'] as const) {
          if (!values[required]) throw new UsageError(`add needs --${required}.`);
        }
        const retention = parseRetention(values);
        const container = values.container ? containerOption(values.container) : { kind: 'memory' as const };
        const plan = await client.call('plans.save', {
          id: '',
          name: values.name!,
          source: resolve(values.source!),
          // A bare word is a repository named in the engine's config; anything else a path from here.
          repo: /[/.]/.test(values.repo!) ? resolve(values.repo!) : values.repo!,
          schedule: values.at!,
          retention: Object.fromEntries(Object.entries(retention).filter(([, count]) => count !== undefined)),
          container,
          enabled: !values.disabled,
          ...(values['no-resume'] ? { noResume: true } : {}),
        });
        process.stdout.write(
          values.json
            ? `${JSON.stringify(plan)}\n`
            : `Added plan ${plan.name} (${plan.id}); next run ${plan.nextRun ?? '-'}.\n`,
        );
        return;
      }
      if (sub === 'remove') {
        const plan = await findPlan(client, positionals[0]);
        await client.call('plans.delete', { id: plan.id });
        process.stdout.write(`Removed plan ${plan.name}; its restore points stay in ${plan.repo}.\n`);
        return;
      }
      if (sub === 'run') {
        const plan = await findPlan(client, positionals[0]);
        const outcome = new Promise<EventData<'plan.ran'>>((resolve) =>
          client.on('plan.ran', (data) => data.planId === plan.id && resolve(data)),
        );
        await client.call('plans.runNow', { id: plan.id });
        const ran = await outcome;
        process.stdout.write(values.json ? `${JSON.stringify(ran)}\n` : `${plan.name}: ${ran.message}\n`);
        if (!ran.ok) throw new Error(`plan ${plan.name} did not succeed: ${ran.message}`);
        return;
      }
      const paused = sub === 'pause';
      await client.call('schedules.setPaused', { paused });
      process.stdout.write(paused ? 'Schedules paused.\n' : 'Schedules resumed.\n');
      return;
    } finally {
      await client.close();
    }
  },
};
