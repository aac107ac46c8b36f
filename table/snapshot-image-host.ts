import {
  copyAndScrub,
  type ImageHostArgs,
  type ImageHostMessage,
  serializeImageHostError,
} from './snapshot-image.js';

/**
 * The snapshot image host: a child process of the node that makes one snapshot image
 * (snapshot-image.ts `createSnapshotImage` forks it and explains why a process). It opens the table
 * store with its own read-only connection, copies and scrubs it into the destination file, sends
 * one answer over the IPC channel and exits. Its lifetime belongs to the parent: it exits when the
 * channel closes (the parent died or killed it), and the parent ends it with SIGKILL to abort.
 */
function main(): void {
  const send = process.send?.bind(process);
  if (send === undefined) throw new Error('snapshot-image-host must be started by createSnapshotImage');
  process.on('disconnect', () => process.exit(0));
  const { databaseFile, destFile } = JSON.parse(process.argv[2] ?? '{}') as ImageHostArgs;
  let message: ImageHostMessage;
  try {
    message = { type: 'done', info: copyAndScrub(databaseFile, destFile) };
  } catch (error) {
    message = { type: 'failed', error: serializeImageHostError(error) };
  }
  send(message, undefined, {}, () => process.disconnect());
}

main();
