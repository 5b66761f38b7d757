// Vitest setup for jsdom: unmount rendered trees after each test; jsdom has no canvas, so getContext answers null
// (as a browser does for an unsupported context) instead of logging "not implemented". findBy and waitFor wait
// for what they look for with a deadline that is only a failure guard: a busy machine renders slowly, and the
// library's default second is a race with the clock.
import { cleanup, configure } from '@testing-library/react';
import { afterEach } from 'vitest';

configure({ asyncUtilTimeout: 30_000 });

if (typeof HTMLCanvasElement !== 'undefined') {
  HTMLCanvasElement.prototype.getContext = (() => null) as unknown as HTMLCanvasElement['getContext'];
}
afterEach(() => cleanup());
