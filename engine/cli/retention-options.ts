// The --keep-… options of the verbs that take a retention policy (prune, schedule add) and their parsing.
import type { Retention } from '../../protocol/model.ts';
import { UsageError } from './verb.ts';

const keepFlags = {
  'keep-last': 'keepLast',
  'keep-hourly': 'keepHourly',
  'keep-daily': 'keepDaily',
  'keep-weekly': 'keepWeekly',
  'keep-monthly': 'keepMonthly',
  'keep-yearly': 'keepYearly',
} as const;
type KeepFlag = keyof typeof keepFlags;

/** parseArgs options for every --keep-… flag. */
export const retentionOptions = Object.fromEntries(
  Object.keys(keepFlags).map((flag) => [flag, { type: 'string' }]),
) as Record<KeepFlag, { type: 'string' }>;

/** The policy the --keep-… values give (only the rules given); a count that is not a whole number is a usage error. */
export function parseRetention(values: Partial<Record<KeepFlag, string>>): Retention {
  const policy: Retention = {};
  for (const [flag, field] of Object.entries(keepFlags) as [KeepFlag, keyof Retention][]) {
    const text = values[flag];
    if (text === undefined) continue;
    if (!/^\d+$/.test(text)) throw new UsageError(`--${flag} takes a whole number, not '${text}'`);
    policy[field] = Number(text);
  }
  return policy;
}
