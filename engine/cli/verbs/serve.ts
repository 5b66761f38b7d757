// `diskline serve`: hosts the engine and serves the UI and its API on http://127.0.0.1 (WebSocket, token).
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openEngine, untilSignal } from '../../api/host.ts';
import { WebServer } from '../../api/web-server.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

const builtRenderer = fileURLToPath(new URL('../../../renderer/dist/', import.meta.url));

export const verb: Verb = {
  usage: 'serve [--repo R] [--port N] [--image PATH]... [--json]',
  summary: 'Serve the UI and the engine API on 127.0.0.1 (prints the address with its access token)',
  help: `Options:
  --repo R          make R the default repository (registered in the engine's config)
  --port N          listen on port N (default: a free port)
  --image PATH      offer an image file as a drive (backup source or restore target); repeatable.
                    --source PATH is the same.
  --allow-origin O  also accept WebSocket connections from the page origin O (a UI dev server)
  --ui DIR          serve the UI from DIR (default: the built renderer, renderer/dist)
  --json            print {"url","port","token"} on one line instead of a sentence
State lives in DISKLINE_STATE_DIR (default /var/lib/diskline for root, else ~/.local/state/diskline).
Runs until interrupted (Ctrl-C or SIGTERM).`,
  async run(args) {
    const { values } = parseVerbArgs(args, {
      repo: { type: 'string' },
      port: { type: 'string' },
      image: { type: 'string', multiple: true },
      source: { type: 'string', multiple: true },
      'allow-origin': { type: 'string', multiple: true },
      ui: { type: 'string' },
      json: { type: 'boolean' },
    });
    const port = values.port === undefined ? 0 : Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new UsageError(`--port must be a port number (0–65535), not '${values.port}'.`);
    }
    const engine = await openEngine();
    const config = engine.state.config;
    if (values.repo) config.defaultRepo = engine.resolveRepo(values.repo);
    for (const image of [...(values.image ?? []), ...(values.source ?? [])]) {
      const path = resolve(image);
      if (!config.images.includes(path)) config.images.push(path);
    }
    await engine.state.saveConfig();
    const server = new WebServer(engine, {
      port,
      rendererDir: values.ui ? resolve(values.ui) : builtRenderer,
      allowedOrigins: values['allow-origin'] ?? [],
    });
    try {
      await server.listen();
    } catch (error) {
      await engine.stop();
      throw new Error(`Could not listen on 127.0.0.1:${port}: ${(error as Error).message}`);
    }
    if (values.json) {
      process.stdout.write(
        `${JSON.stringify({ url: server.url, port: server.port, token: server.token })}\n`,
      );
    } else {
      process.stdout.write(`Diskline is ready: open ${server.url}\n(Ctrl-C stops it.)\n`);
    }
    await untilSignal(async () => {
      await server.close();
      await engine.stop();
    });
    return;
  },
};
