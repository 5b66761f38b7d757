// Builds the renderer bundle (renderer/dist, served by `diskline serve` and loaded by the Electron shell) and
// runs its component tests in jsdom.
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vitest/config';

const rendererRoot = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root: rendererRoot,
  // Relative asset URLs: the same bundle loads from http://127.0.0.1:PORT/ and from file:// in Electron.
  base: './',
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 900 },
  test: {
    root: rendererRoot,
    environment: 'jsdom',
    include: ['src/**/*.test.{ts,tsx}'],
    setupFiles: ['src/test-setup.ts'],
    // Failure guards, not budgets: a test waits for what it needs, however slow the machine is today.
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
