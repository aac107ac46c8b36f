import type { Server } from 'node:net';

/**
 * Starts `server` listening on host:port (port 0: any free port) and resolves with the port it got;
 * rejects with the listen error (EADDRINUSE, EACCES…) instead of leaving it to an 'error' event.
 */
export async function listen(server: Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  return typeof address === 'object' && address !== null ? address.port : port;
}
