// A drive's partitions drawn to scale, each filled to its used space and labelled with its file system.
import type { Drive } from '../../../protocol/model.ts';
import { formatBytes } from '../format/units.ts';

export function PartitionBar({ drive }: { drive: Drive }) {
  const size = Math.max(1, drive.size);
  return (
    <div className="partition-bar" aria-hidden="true">
      {drive.partitions.map((partition) => (
        <div
          key={partition.index}
          className={`partition fs-${(partition.filesystem ?? 'unknown').replace(/[^a-z0-9]/gi, '')}`}
          style={{
            left: `${(partition.start / size) * 100}%`,
            width: `${Math.max(0.6, (partition.size / size) * 100)}%`,
          }}
          title={`${partition.filesystem ?? 'unknown'} · ${formatBytes(partition.usedBytes)} used of ${formatBytes(partition.size)}`}
        >
          <div
            className="partition-used"
            style={{ width: `${(partition.usedBytes / Math.max(1, partition.size)) * 100}%` }}
          />
          <span className="partition-label">{partition.filesystem ?? '—'}</span>
        </div>
      ))}
    </div>
  );
}
