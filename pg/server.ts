import { randomInt } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext } from 'node:tls';
import { listen, type TlsCredentials } from '../core/index.js';
import { scramSecret } from './scram.js';
import { type PgQueryRunner, PgSession } from './session.js';

/**
 * The PostgreSQL door of a node (QuestDB's port 8812): a TCP listener whose connections are
 * PgSessions, and the cancel keys that let a CancelRequest on a new connection stop the query of
 * another.
 */

export interface PgServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  runQuery: PgQueryRunner;
  /** Users and their passwords (`pg.user`/`pg.password`); a connection must give one. Empty: none asked. */
  credentials: { user: string; password: string }[];
  /** Bytes of one message a client may send (`pg.recv.buffer.size`). */
  maxMessageBytes: number;
  /** Open connections at most (`pg.net.connection.limit`); Node closes any further one. */
  maxConnections: number;
  /** Reported to clients as server_version. */
  serverVersion: string;
  /** TLS credentials: every connection must then ask for TLS (SSLRequest). */
  tls?: TlsCredentials | undefined;
  /** `scram-sha-256` (default) or `md5` (`pg.auth.method`). */
  authMethod?: 'scram-sha-256' | 'md5';
  /** Connection-level events (never passwords or query text). */
  log?: (message: string) => void;
}

export interface PgServer {
  /** The port listened on (the real one when 0 was asked). */
  readonly port: number;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** A PostgreSQL version clients accept; psql 15, pgx and Grafana read it. */
export const PG_SERVER_VERSION = '15.0';

export async function startPgServer(options: PgServerOptions): Promise<PgServer> {
  const sessions = new Map<number, { session: PgSession; secret: number }>();
  // PBKDF2 once per user and start, not per connection.
  const scram =
    options.authMethod === 'md5'
      ? undefined
      : new Map(options.credentials.map((c) => [c.user, scramSecret(c.password)]));
  const tls =
    options.tls === undefined
      ? undefined
      : createSecureContext({ cert: options.tls.cert, key: options.tls.key });
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    let processId: number;
    do processId = randomInt(1, 2 ** 31 - 1);
    while (sessions.has(processId));
    const secret = randomInt(0, 2 ** 31 - 1);
    const session = new PgSession(socket, {
      runQuery: options.runQuery,
      ...(options.credentials.length === 0 ? {} : { credentials: options.credentials }),
      maxMessageBytes: options.maxMessageBytes,
      serverVersion: options.serverVersion,
      ...(tls === undefined ? {} : { tls }),
      ...(scram === undefined ? {} : { scram }),
      processId,
      secret,
      onCancelRequest: (pid, key) => {
        const target = sessions.get(pid);
        if (target !== undefined && target.secret === key) target.session.cancel();
      },
      ...(options.log === undefined ? {} : { log: options.log }),
    });
    sessions.set(processId, { session, secret });
    socket.on('close', () => {
      sessions.delete(processId);
      sockets.delete(socket);
    });
  });
  server.maxConnections = options.maxConnections;
  const port = await listen(server, options.host, options.port);
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
