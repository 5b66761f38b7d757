// An error shown where it happened: the message recorded for one place (see ui-slice `attempt`), dismissable.
import { useApp } from '../store/app-store.ts';

export function ErrorNote({ place }: { place: string }) {
  const message = useApp((s) => s.errors[place]);
  const clearError = useApp((s) => s.clearError);
  if (!message) return null;
  return (
    <div className="error-note" role="alert">
      <span>{message}</span>
      <button type="button" className="link" onClick={() => clearError(place)} aria-label="Dismiss">
        ×
      </button>
    </div>
  );
}

export function InlineError({ message }: { message: string | null | undefined }) {
  if (!message) return null;
  return (
    <div className="error-note" role="alert">
      <span>{message}</span>
    </div>
  );
}
