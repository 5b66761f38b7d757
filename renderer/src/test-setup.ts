// Vitest setup for jsdom: unmount rendered trees after each test; jsdom has no canvas, so getContext answers null
// (as a browser does for an unsupported context) instead of logging "not implemented".
import { cleanup } from '@testing-library/react';
import { afterEach } from 'vitest';

if (typeof HTMLCanvasElement !== 'undefined') {
  HTMLCanvasElement.prototype.getContext = (() => null) as unknown as HTMLCanvasElement['getContext'];
}
afterEach(() => cleanup());
