// Entry point: connects to the engine (desktop bridge or WebSocket), builds the store, wires events into it and
// renders the app. Without a bridge or a token it says how to open the UI properly.
import './engine/zod-without-eval.ts';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App.tsx';
import { connectToEngine } from './engine/choose-transport.ts';
import { fragmentParam } from './engine/websocket-client.ts';
import { createAppStore, StoreContext } from './store/app-store.ts';
import { bindEngine } from './store/bind-engine.ts';
import './styles.css';

const rootElement = document.getElementById('root')!;
const connection = connectToEngine(window);

if (!connection) {
  rootElement.innerHTML = `<div class="no-token"><h1>Diskline</h1><p>This page needs the access token the engine
  printed. Open the full address <code>diskline serve</code> shows (it ends in <code>#token=…</code>), or use the
  desktop app.</p></div>`;
} else {
  const store = createAppStore(connection.client, { storage: window.localStorage });
  store.getState().loadPreferences();
  const repoFromAddress = fragmentParam(window.location.hash, 'repo');
  if (repoFromAddress) {
    store.getState().addRepo(repoFromAddress);
    store.getState().setCurrentRepo(repoFromAddress);
  }
  bindEngine(store, connection);
  createRoot(rootElement).render(
    <StrictMode>
      <StoreContext.Provider value={store}>
        <App />
      </StoreContext.Provider>
    </StrictMode>,
  );
}
