// `diskline init --repo R`: creates an empty, encrypted repository (or, only when asked, an unencrypted one).
import { Repository } from '../../repository/repository.ts';
import { readPassphrase, repositoryHelp, repositoryOptions, requireRepo } from '../repository-access.ts';
import { ExitCode, parseVerbArgs, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'init --repo R [--insecure-no-encryption] [--json]',
  summary: 'Create a repository for restore points (encrypted with a passphrase)',
  help: `${repositoryHelp}\n  --insecure-no-encryption  store chunks unencrypted (anyone who reads the directory reads the disks)\n  --json                 print {repo, encrypted}`,
  async run(args) {
    const { values } = parseVerbArgs(args, {
      ...repositoryOptions,
      'insecure-no-encryption': { type: 'boolean' },
      json: { type: 'boolean' },
    });
    const path = requireRepo(values);
    const insecure = values['insecure-no-encryption'] === true;
    const repo = await Repository.init(path, {
      password: insecure ? null : await readPassphrase(values),
      insecureNoEncryption: insecure,
    });
    await repo.close();
    const result = { repo: repo.path, encrypted: !insecure };
    process.stdout.write(
      values.json
        ? `${JSON.stringify(result)}\n`
        : `Created ${insecure ? 'an UNENCRYPTED' : 'an encrypted'} repository in ${repo.path}\n`,
    );
    return ExitCode.ok;
  },
};
