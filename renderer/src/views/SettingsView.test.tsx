import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import type { S3ConnectionReport } from '../../../protocol/messages.ts';
import { s3Location } from '../components/S3RepositoryForm.tsx';
import { FakeEngine } from '../testing/fake-engine.ts';
import { renderWithStore } from '../testing/render.tsx';
import { SettingsView } from './SettingsView.tsx';

const report = (overrides: Partial<S3ConnectionReport> = {}): S3ConnectionReport => ({
  ok: true,
  location: 's3:https://s3.example.com/office/laptop',
  reachable: true,
  authorized: true,
  bucketExists: true,
  repositoryFound: false,
  prefixHoldsOtherObjects: false,
  objectLock: { enabled: false, mode: null, days: null },
  problem: null,
  ...overrides,
});

describe('Settings: adding an S3 repository', () => {
  it('builds the location from endpoint, bucket and prefix, and refuses what is not one', () => {
    expect(s3Location('https://s3.example.com/', 'office', '/laptop/')).toBe(
      's3:https://s3.example.com/office/laptop',
    );
    expect(s3Location('http://127.0.0.1:7480', 'office', '')).toBe('s3:http://127.0.0.1:7480/office');
    expect(s3Location('s3.example.com', 'office', '')).toBeNull();
    expect(s3Location('https://s3.example.com', 'Bad_Bucket', '')).toBeNull();
  });

  it('adds the location only after the engine connection test succeeds, and says what the test found', async () => {
    const engine = new FakeEngine()
      .handle('repo.checkS3', ({ location }) =>
        location.endsWith('/photos')
          ? report({ ok: false, problem: 'objects that are not a Diskline repository are already here' })
          : report({ objectLock: { enabled: true, mode: 'COMPLIANCE', days: 30 } }),
      )
      .handle('points.list', () => []);
    const { store } = renderWithStore(<SettingsView />, engine);
    const form = screen.getByRole('form', { name: 'Add an S3 repository' });
    const add = within(form).getByRole('button', { name: 'Add' }) as HTMLButtonElement;
    fireEvent.change(within(form).getByLabelText('Endpoint'), {
      target: { value: 'https://s3.example.com' },
    });
    fireEvent.change(within(form).getByLabelText('Bucket'), { target: { value: 'office' } });
    fireEvent.change(within(form).getByLabelText('Prefix'), { target: { value: 'photos' } });
    expect(add.disabled).toBe(true);
    fireEvent.click(within(form).getByRole('button', { name: 'Test connection' }));
    await waitFor(() =>
      expect(within(form).getByRole('status').textContent).toMatch(/not a Diskline repository/),
    );
    expect(add.disabled).toBe(true);

    fireEvent.change(within(form).getByLabelText('Prefix'), { target: { value: 'laptop' } });
    expect(within(form).queryByRole('status')).toBeNull(); // a test of another location says nothing here
    fireEvent.change(within(form).getByLabelText('Access key (for the test only)'), {
      target: { value: 'AK' },
    });
    fireEvent.change(within(form).getByLabelText('Secret key (for the test only)'), {
      target: { value: 'SK' },
    });
    fireEvent.click(within(form).getByRole('button', { name: 'Test connection' }));
    await waitFor(() =>
      expect(within(form).getByRole('status').textContent).toMatch(
        /Object Lock is on \(compliance, 30 days\)/,
      ),
    );
    expect(engine.callsOf('repo.checkS3').at(-1)).toEqual({
      location: 's3:https://s3.example.com/office/laptop',
      accessKeyId: 'AK',
      secretAccessKey: 'SK',
    });
    await act(async () => fireEvent.click(add));
    expect(store.getState().repos).toContain('s3:https://s3.example.com/office/laptop');
  });
});
