// Errors of opening devices: a refusal for safety says which device and why.
import { RefusalError } from '../../protocol/failure.ts';

/** Diskline refused to touch a device because doing so could destroy data in use or not fit. */
export class DeviceRefusedError extends RefusalError {
  readonly device: string;
  constructor(device: string, message: string) {
    super(message);
    this.name = 'DeviceRefusedError';
    this.device = device;
  }
}
