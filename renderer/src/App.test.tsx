import { act, fireEvent, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { App } from './App.tsx';
import { renderWithStore } from './testing/render.tsx';

describe('App shell', () => {
  it('says the engine is disconnected and when it retries', () => {
    const { store } = renderWithStore(<App />);
    act(() =>
      store.getState().setConnection({
        status: 'disconnected',
        retryInMs: 4000,
        reason: 'the link closed (code 1006)',
        transport: 'websocket',
      }),
    );
    expect(screen.getByRole('status').textContent).toBe(
      'Disconnected from the engine: the link closed (code 1006). Retrying in 4 s; is `diskline serve` still running?',
    );
  });

  it('navigates between views from the sidebar and switches the theme', () => {
    const { store } = renderWithStore(<App />);
    const nav = screen.getByRole('navigation', { name: 'Main' });
    fireEvent.click(screen.getByRole('button', { name: 'Drives' }));
    expect(nav.querySelector('[aria-current="page"]')?.textContent).toBe('Drives');
    expect(screen.getByRole('heading', { name: 'Drives' })).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: /^Theme: system/ }));
    expect(store.getState().theme).toBe('light');
    expect(document.documentElement.dataset.theme).toBe('light');
    fireEvent.click(screen.getByRole('button', { name: /^Theme: light/ }));
    expect(document.documentElement.dataset.theme).toBe('dark');
  });
});
