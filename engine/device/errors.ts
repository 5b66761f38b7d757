// Errors of opening devices, each carrying the CLI exit code it maps to (3: refused for safety).

/** Diskline refused to touch a device because doing so could destroy data in use or not fit. */
export class DeviceRefusedError extends Error {
  readonly exitCode = 3;
  readonly device: string;
  constructor(device: string, message: string) {
    super(message);
    this.name = 'DeviceRefusedError';
    this.device = device;
  }
}
