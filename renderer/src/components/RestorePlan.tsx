// The layout a restore writes onto a target of another size (restore.preview's plan), shown before the typed
// confirmation: which partition shrinks or grows, to what, by which tool, and which ones move.
import type { FitPlanView } from '../../../protocol/restore-plan.ts';
import { formatBytes } from '../format/units.ts';

const summaries: Record<FitPlanView['mode'], string> = {
  'as-is': 'The layout is written as it was.',
  'table-moved': 'Partitions stay where they are; the partition table is fitted to the new size.',
  shrink: 'The target is smaller: a partition is shrunk to fit.',
  grow: 'The target is bigger: a partition is grown to fill it.',
};

export function RestorePlan({ plan }: { plan: FitPlanView }) {
  if (plan.mode === 'as-is') return null;
  return (
    <div className="restore-plan">
      <strong>
        {summaries[plan.mode]} ({formatBytes(plan.sourceSize)} onto {formatBytes(plan.targetSize)})
      </strong>
      <ul aria-label="Planned layout">
        {plan.partitions.map((p) => (
          <li key={p.index}>
            Partition {p.index} ({p.filesystem ?? 'unknown'}, {formatBytes(p.usedBytes)} used):{' '}
            {p.change === 'kept'
              ? `kept, ${formatBytes(p.to.size)}`
              : `${p.change}, ${formatBytes(p.from.size)} → ${formatBytes(p.to.size)}${p.change === 'moved' ? ` at ${formatBytes(p.to.start)}` : ''}${p.resizeWith ? ` (${p.resizeWith})` : ''}`}
          </li>
        ))}
      </ul>
      {plan.warnings.map((warning) => (
        <p key={warning} className="muted">
          {warning}
        </p>
      ))}
    </div>
  );
}
