// A drive's protection while in use, on its card: the way it is protected (tap, device-mapper, from the next
// restart, not yet, or not at all) and why, what the next restart changes, and Protect… / Unprotect… where
// the boot setup would change something (each opens the typed confirmation, ProtectionDialog).
import type { ProtectionKind } from '../../../protocol/protection.ts';
import { useApp } from '../store/app-store.ts';

export const protectionLabels: Record<ProtectionKind, string> = {
  tap: 'Tap',
  'device-mapper': 'Device-mapper',
  'needs-restart': 'Protected after restart',
  unprotected: 'Not protected',
  cannot: 'Cannot be protected',
};

const badgeTone: Record<ProtectionKind, string> = {
  tap: 'badge accent',
  'device-mapper': 'badge accent',
  'needs-restart': 'badge',
  unprotected: 'badge warn',
  cannot: 'badge warn',
};

export function DriveProtection({ device }: { device: string }) {
  const protection = useApp((s) => s.protection[device]);
  const openProtection = useApp((s) => s.openProtection);
  if (!protection) return null;
  return (
    <section className="protection small" aria-label={`Protection of ${device}`}>
      <p>
        <span className={badgeTone[protection.kind]}>{protectionLabels[protection.kind]}</span>{' '}
        {protection.detail}
      </p>
      {protection.afterRestart && <p className="muted">After a restart: {protection.afterRestart}</p>}
      {(protection.canProtect || protection.canUnprotect) && (
        <div className="card-actions">
          {protection.canProtect && (
            <button
              type="button"
              onClick={() => openProtection(device, 'protect')}
              title="Set up device-mapper protection at boot, so backups stay consistent while the system runs from it"
            >
              Protect…
            </button>
          )}
          {protection.canUnprotect && (
            <button type="button" onClick={() => openProtection(device, 'unprotect')}>
              Unprotect…
            </button>
          )}
        </div>
      )}
    </section>
  );
}
