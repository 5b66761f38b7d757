// Waiting for a job's end through a client, as the tests that drive a daemon do: its 'job.updated' events,
// or the job list when it ended before the wait began.
import type { Job } from '../../protocol/model.ts';
import type { SocketClient } from '../api/client.ts';

const running = new Set<Job['state']>(['queued', 'running']);

/** The job once it has ended (succeeded, failed, cancelled or interrupted). */
export async function jobEnded(client: SocketClient, id: string): Promise<Job> {
  let off = () => {};
  const ended = new Promise<Job>((resolve) => {
    off = client.on('job.updated', (job) => {
      if (job.id === id && !running.has(job.state)) resolve(job);
    });
  });
  try {
    const listed = (await client.call('jobs.list', {})).find((job) => job.id === id);
    if (listed && !running.has(listed.state)) return listed;
    return await ended;
  } finally {
    off();
  }
}
