// The engine's event stream: jobs, plans and drives publish here, every connected client receives.
// Block-map events are not broadcast: they go only to the connections that subscribed to a job's map.
import type { EventData, EventName } from '../../protocol/messages.ts';

export type EventListener = (event: EventName, data: unknown) => void;

export class EventBus {
  #listeners = new Set<EventListener>();

  emit<E extends EventName>(event: E, data: EventData<E>): void {
    for (const listener of this.#listeners) {
      try {
        listener(event, data);
      } catch {
        // A listener that fails (a client gone mid-write) must not stop the others.
      }
    }
  }

  /** Returns the function that unsubscribes. */
  subscribe(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
