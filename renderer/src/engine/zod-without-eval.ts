// Turns off zod's eval fast path before any schema exists. zod probes `new Function` when it builds its first
// object schema; the desktop shell's CSP forbids eval, and Chromium reports even the caught attempt as a CSP
// violation. main.tsx imports this module first, so it runs before the protocol's schemas are built.
import { z } from 'zod';

z.config({ jitless: true });
