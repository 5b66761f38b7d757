// `diskline init --repo R`: creates an empty, encrypted repository (or, only when asked, an unencrypted one).
import { parseByteSize } from '../../../protocol/byte-size.ts';
import { MIN_PASSPHRASE_LENGTH } from '../../repository/keys.ts';
import { DEFAULT_CHUNK_SIZE, isChunkSize, Repository } from '../../repository/repository.ts';
import { readPassphrase, repositoryHelp, repositoryOptions, requireRepo } from '../repository-access.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage:
    'init --repo R [--chunk-size 64K] [--group-readable] [--insecure-no-encryption | --insecure-weak-passphrase] [--json]',
  summary: 'Create a repository for restore points (encrypted with a passphrase)',
  help: `${repositoryHelp}\n  --chunk-size SIZE      the unit a disk is copied, deduplicated and restored in (default ${DEFAULT_CHUNK_SIZE >> 10}K; a power of two from 16K to 4M)\n  --group-readable       let the directory's group read the repository (files 0640, folders 0750; default 0600, 0700)\n  --insecure-no-encryption  store chunks unencrypted (anyone who reads the directory reads the disks)\n  --insecure-weak-passphrase  accept a passphrase shorter than ${MIN_PASSPHRASE_LENGTH} characters or of few different ones\n  --json                 print {repo, encrypted}`,
  async run(args) {
    const { values } = parseVerbArgs(args, {
      ...repositoryOptions,
      'insecure-no-encryption': { type: 'boolean' },
      'insecure-weak-passphrase': { type: 'boolean' },
      'group-readable': { type: 'boolean' },
      'chunk-size': { type: 'string' },
      json: { type: 'boolean' },
    });
    const path = requireRepo(values);
    const chunkText = values['chunk-size'];
    const chunkSize = chunkText === undefined ? DEFAULT_CHUNK_SIZE : parseByteSize(chunkText);
    if (!isChunkSize(chunkSize)) {
      throw new UsageError(`--chunk-size ${chunkText}: expected a power of two from 16K to 4M, such as 64K`);
    }
    const insecure = values['insecure-no-encryption'] === true;
    const repo = await Repository.init(path, {
      password: insecure ? null : await readPassphrase(values),
      insecureNoEncryption: insecure,
      insecureWeakPassphrase: values['insecure-weak-passphrase'] === true,
      groupReadable: values['group-readable'] === true,
      chunkSize,
    });
    await repo.close();
    const result = { repo: repo.path, encrypted: !insecure };
    process.stdout.write(
      values.json
        ? `${JSON.stringify(result)}\n`
        : `Created ${insecure ? 'an UNENCRYPTED' : 'an encrypted'} repository in ${repo.path}\n`,
    );
    return;
  },
};
