// The engine's event stream: jobs, plans and drives publish here. An event about an object carries its owner
// (a uid; null: root's) and reaches only connections allowed to see it; an event without one reaches all.
// Block-map events are not broadcast: they go only to the connections that subscribed to a job's map.
import type { EventData, EventName } from '../../protocol/messages.ts';

/** Owner of what an event is about: a uid, null for root's, undefined for news anyone may have. */
export type EventOwner = number | null | undefined;
export type EventListener = (event: EventName, data: unknown, owner: EventOwner) => void;

export class EventBus {
  #listeners = new Set<EventListener>();

  emit<E extends EventName>(event: E, data: EventData<E>, owner?: EventOwner): void {
    for (const listener of this.#listeners) {
      try {
        listener(event, data, owner);
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
