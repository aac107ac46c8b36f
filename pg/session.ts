import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import { type SecureContext, TLSSocket } from 'node:tls';
import { isWalshipError } from '../core/index.js';
import type { PgPage } from '../table/index.js';
import { SCRAM_MECHANISM, ScramExchange, type ScramSecret, scramSecret } from './scram.js';
import {
  isEmptyQuery,
  parameterCount,
  readsEmptyCatalog,
  rewriteForSqlite,
  type SessionCommand,
  sessionCommandOf,
  splitStatements,
  UnsupportedCastError,
} from './sql-text.js';
import { decodeParam, encodeDataRows, PgValueError } from './values.js';
import {
  authenticationRequest,
  backendKeyData,
  CANCEL_REQUEST_CODE,
  commandComplete,
  emptyMessage,
  errorResponse,
  type FrontendMessage,
  FrontendReader,
  GSSENC_REQUEST_CODE,
  PayloadReader,
  type PgErrorFields,
  PgProtocolError,
  PROTOCOL_V3,
  parameterDescription,
  parameterStatus,
  readyForQuery,
  rowDescription,
  SSL_REQUEST_CODE,
} from './wire.js';

/**
 * One PostgreSQL client connection (protocol v3): startup, password authentication (MD5), the
 * simple protocol and the extended one (Parse/Bind/Describe/Execute/Sync/Close/Flush, named and
 * unnamed statements and portals, text and binary formats), session commands (SET, SHOW, BEGIN…)
 * answered here, and every query run through `runQuery` (the node's query hosts, with their limits
 * and read consistency). Messages are handled one at a time in order; a message longer than
 * `maxMessageBytes` closes the connection with SQLSTATE 54000, and any malformed one with 08P01,
 * without touching anything else.
 */

/** Runs one read-only statement (QueryPool.queryPg behind the node's read consistency). */
export type PgQueryRunner = (sql: string, options: PgQueryOptions) => Promise<PgPage>;

export interface PgQueryOptions {
  /** `$1` → key `1`. */
  params?: Record<string, unknown>;
  /** Prepare only: the columns, no rows. */
  describeOnly?: boolean;
  /** Aborted by a CancelRequest or when the connection closes. */
  signal: AbortSignal;
  /**
   * The session's settings (SET): `walship.min_txn`, `walship.wait_ms` and
   * `walship.max_staleness_ms` ask a replica for what `/exec`'s parameters of those names do.
   */
  session: ReadonlyMap<string, string>;
}

export interface PgSessionOptions {
  runQuery: PgQueryRunner;
  /** Checks a user's password (md5 response) — true lets them in. Undefined: no password asked. */
  credentials?: { user: string; password: string }[];
  maxMessageBytes: number;
  /** What ParameterStatus server_version says (a PostgreSQL version clients accept). */
  serverVersion: string;
  /** This connection's cancel key, registered with the server. */
  processId: number;
  secret: number;
  /** A CancelRequest arrived on this connection for (processId, secret). */
  onCancelRequest: (processId: number, secret: number) => void;
  /** TLS for every connection (SSLRequest); a startup message without it is refused. */
  tls?: SecureContext;
  /** SCRAM-SHA-256 secrets by user: then SCRAM is asked instead of MD5 (`pg.auth.method`). */
  scram?: ReadonlyMap<string, ScramSecret>;
  /** Connection-level events: never passwords or query text. */
  log?: (message: string) => void;
}

interface Prepared {
  /** The SQL as SQLite runs it (rewriteForSqlite). */
  sql: string;
  /** Why the SQL could not be rewritten (a cast SQLite has no type for): the query fails with it. */
  rewriteError?: Error;
  paramOids: number[];
  command: SessionCommand | undefined;
  /** Result columns, once described. */
  described?: { names: string[]; oids: number[] } | undefined;
}

/** The secret an unknown user is checked against: a fresh random one, which no proof matches. */
const UNKNOWN_USER_SECRET = () => scramSecret(randomBytes(16).toString('hex'), randomBytes(16), 4096);

/** A page, with the command tag when it is not `SELECT n`. */
type Page = PgPage & { tag?: string };

interface Portal {
  statement: Prepared;
  params: Record<string, unknown> | undefined;
  resultFormats: number[];
  page?: Page;
  /** Rows of `page` already sent by Execute. */
  sent: number;
}

const SETTINGS_DEFAULTS: Record<string, string> = {
  server_encoding: 'UTF8',
  client_encoding: 'UTF8',
  datestyle: 'ISO, MDY',
  timezone: 'UTC',
  integer_datetimes: 'on',
  standard_conforming_strings: 'on',
  intervalstyle: 'postgres',
  is_superuser: 'off',
  search_path: 'public',
  transaction_isolation: 'read committed',
  max_identifier_length: '63',
};

/** ParameterStatus names with their spelling on the wire. */
const REPORTED = [
  'server_encoding',
  'client_encoding',
  'DateStyle',
  'TimeZone',
  'integer_datetimes',
  'standard_conforming_strings',
  'IntervalStyle',
  'is_superuser',
];

export class PgSession {
  /** The connection: the TCP socket, or the TLS socket over it after an SSLRequest. */
  #socket: Socket;
  /** Messages read and not yet handled (a message after an SSLRequest, before TLS, is refused). */
  #queued = 0;
  readonly #onChunk = (chunk: Buffer) => this.#onData(chunk);
  readonly #options: PgSessionOptions;
  readonly #reader: FrontendReader;
  readonly #settings = new Map<string, string>(Object.entries(SETTINGS_DEFAULTS));
  readonly #statements = new Map<string, Prepared>();
  readonly #portals = new Map<string, Portal>();
  #phase: 'startup' | 'password' | 'ready' | 'closed' = 'startup';
  #user = '';
  #salt = randomBytes(4);
  #scram: ScramExchange | undefined;
  /** The extended protocol failed: messages are skipped until Sync. */
  #skipToSync = false;
  #inTransaction = false;
  #queue: Promise<void> = Promise.resolve();
  #running: AbortController | undefined;

  constructor(socket: Socket, options: PgSessionOptions) {
    this.#socket = socket;
    this.#options = options;
    this.#reader = new FrontendReader(options.maxMessageBytes);
    this.#settings.set('server_version', options.serverVersion);
    this.#listen(socket);
  }

  #listen(socket: Socket): void {
    socket.on('data', this.#onChunk);
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
  }

  /** Aborts the running query (CancelRequest from another connection). */
  cancel(): void {
    this.#running?.abort();
  }

  close(): void {
    if (this.#phase === 'closed') return;
    this.#phase = 'closed';
    this.#running?.abort();
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    let messages: FrontendMessage[];
    try {
      messages = this.#reader.push(chunk);
    } catch (error) {
      this.#fatal(error);
      return;
    }
    for (const message of messages) {
      this.#queued++;
      this.#queue = this.#queue
        .then(() => this.#handle(message.type, message.payload))
        .finally(() => this.#queued--);
    }
    // A client that sends faster than queries run waits on TCP, not on our memory.
    if (messages.length > 0) {
      this.#socket.pause();
      void this.#queue.then(() => {
        if (this.#phase !== 'closed') this.#socket.resume();
      });
    }
  }

  async #handle(type: number, payload: Buffer): Promise<void> {
    if (this.#phase === 'closed') return;
    try {
      if (this.#phase === 'startup') return this.#startup(payload);
      if (this.#phase === 'password') return this.#password(type, payload);
      await this.#message(type, payload);
    } catch (error) {
      if (error instanceof PgProtocolError) this.#fatal(error);
      else
        this.#fatal(
          new PgProtocolError(
            `internal error: ${error instanceof Error ? error.message : String(error)}`,
            'XX000',
          ),
        );
    }
  }

  #startup(payload: Buffer): void {
    const reader = new PayloadReader(payload);
    const code = reader.int32();
    if (
      code === SSL_REQUEST_CODE &&
      this.#options.tls !== undefined &&
      !(this.#socket instanceof TLSSocket)
    ) {
      this.#upgrade(this.#options.tls);
      return;
    }
    if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
      // No TLS here (or already): the client goes on in plain text or gives up, as it is set to.
      this.#socket.write('N');
      return;
    }
    if (code === CANCEL_REQUEST_CODE) {
      this.#options.onCancelRequest(reader.int32(), reader.int32());
      this.close();
      return;
    }
    if (code !== PROTOCOL_V3) {
      throw new PgProtocolError(
        `unsupported frontend protocol ${code >> 16}.${code & 0xffff}: walship serves 3.0`,
        '0A000',
      );
    }
    const parameters = new Map<string, string>();
    for (;;) {
      const name = reader.cstring();
      if (name === '') break;
      parameters.set(name, reader.cstring());
    }
    if (this.#options.tls !== undefined && !(this.#socket instanceof TLSSocket)) {
      throw new PgProtocolError(
        'this server requires TLS: connect with sslmode=require (or verify-full)',
        '28000',
      );
    }
    this.#user = parameters.get('user') ?? '';
    if (this.#user === '')
      throw new PgProtocolError('no PostgreSQL user name specified in startup packet', '28000');
    for (const name of ['application_name', 'client_encoding', 'DateStyle', 'TimeZone', 'search_path']) {
      const value = parameters.get(name);
      if (value !== undefined) this.#settings.set(name.toLowerCase(), value);
    }
    if (this.#options.credentials === undefined) {
      this.#authenticated();
      return;
    }
    this.#phase = 'password';
    if (this.#options.scram === undefined) {
      this.#socket.write(authenticationRequest(5, this.#salt));
      return;
    }
    // AuthenticationSASL: the mechanisms offered, each NUL-terminated, then an empty one.
    this.#socket.write(authenticationRequest(10, Buffer.from(`${SCRAM_MECHANISM}\0\0`)));
  }

  /**
   * Answers an SSLRequest with `S` and goes on over TLS. Bytes the client sent after the request,
   * before the handshake, would be read as if they came over TLS: they end the connection.
   */
  #upgrade(context: SecureContext): void {
    if (this.#queued > 1 || this.#reader.buffered > 0) {
      throw new PgProtocolError('data after an SSLRequest, before the TLS handshake');
    }
    const raw = this.#socket;
    raw.off('data', this.#onChunk);
    raw.write('S');
    const secure = new TLSSocket(raw, { isServer: true, secureContext: context });
    this.#socket = secure;
    this.#listen(secure);
    raw.resume();
  }

  #password(type: number, payload: Buffer): void {
    if (type !== 0x70) throw new PgProtocolError('expected a password message');
    if (this.#options.scram !== undefined) {
      this.#sasl(payload, this.#options.scram);
      return;
    }
    const answer = new PayloadReader(payload).cstring();
    const user = this.#options.credentials?.find((c) => c.user === this.#user);
    const expected = user === undefined ? undefined : md5Response(user.user, user.password, this.#salt);
    const ok =
      expected !== undefined &&
      answer.length === expected.length &&
      timingSafeEqual(Buffer.from(answer), Buffer.from(expected));
    if (!ok) {
      this.#refuseLogin();
      return;
    }
    this.#authenticated();
  }

  /**
   * SCRAM-SHA-256 (scram.ts): SASLInitialResponse, then SASLResponse, both 'p' messages. An
   * unknown user goes through the same exchange against a throwaway secret and fails at the proof.
   */
  #sasl(payload: Buffer, secrets: ReadonlyMap<string, ScramSecret>): void {
    const reader = new PayloadReader(payload);
    if (this.#scram === undefined) {
      const mechanism = reader.cstring();
      if (mechanism !== SCRAM_MECHANISM)
        throw new PgProtocolError(`SASL mechanism ${JSON.stringify(mechanism)} is not offered`, '28000');
      const length = reader.int32();
      const clientFirst = reader.bytes(Math.max(0, length)).toString('utf8');
      this.#scram = new ScramExchange(secrets.get(this.#user) ?? UNKNOWN_USER_SECRET());
      this.#socket.write(authenticationRequest(11, Buffer.from(this.#scram.first(clientFirst))));
      return;
    }
    const serverFinal = this.#scram.final(reader.bytes(reader.remaining).toString('utf8'));
    if (serverFinal === undefined || !secrets.has(this.#user)) {
      this.#refuseLogin();
      return;
    }
    this.#socket.write(authenticationRequest(12, Buffer.from(serverFinal)));
    this.#authenticated();
  }

  #refuseLogin(): void {
    this.#options.log?.(`pg: password authentication failed for user ${JSON.stringify(this.#user)}`);
    this.#send(
      errorResponse({
        severity: 'FATAL',
        sqlState: '28P01',
        message: `password authentication failed for user "${this.#user}"`,
      }),
    );
    this.close();
  }

  #authenticated(): void {
    this.#phase = 'ready';
    const parts = [authenticationRequest(0)];
    parts.push(parameterStatus('server_version', this.#options.serverVersion));
    for (const name of REPORTED)
      parts.push(parameterStatus(name, this.#settings.get(name.toLowerCase()) ?? ''));
    parts.push(parameterStatus('application_name', this.#settings.get('application_name') ?? ''));
    parts.push(parameterStatus('session_authorization', this.#user));
    parts.push(backendKeyData(this.#options.processId, this.#options.secret));
    parts.push(readyForQuery('I'));
    this.#send(Buffer.concat(parts));
  }

  async #message(type: number, payload: Buffer): Promise<void> {
    const tag = String.fromCharCode(type);
    if (tag === 'X') {
      this.close();
      return;
    }
    if (tag === 'Q') return this.#simpleQuery(new PayloadReader(payload).cstring());
    if (tag === 'S') {
      this.#skipToSync = false;
      this.#send(readyForQuery(this.#status()));
      return;
    }
    if (tag === 'H') return;
    if (this.#skipToSync) return;
    try {
      switch (tag) {
        case 'P':
          return this.#parse(new PayloadReader(payload));
        case 'B':
          return this.#bind(new PayloadReader(payload));
        case 'D':
          return await this.#describe(new PayloadReader(payload));
        case 'E':
          return await this.#execute(new PayloadReader(payload));
        case 'C':
          return this.#close(new PayloadReader(payload));
        case 'F':
          throw new PgError({
            severity: 'ERROR',
            sqlState: '0A000',
            message: 'function calls are not supported',
          });
        case 'd':
        case 'c':
        case 'f':
          throw new PgError({
            severity: 'ERROR',
            sqlState: '0A000',
            message: 'COPY is not supported: write through ILP',
          });
        default:
          throw new PgProtocolError(`unknown message type ${JSON.stringify(tag)}`);
      }
    } catch (error) {
      if (error instanceof PgProtocolError) throw error;
      this.#send(errorResponse(errorFieldsOf(error)));
      this.#skipToSync = true;
    }
  }

  async #simpleQuery(sql: string): Promise<void> {
    if (isEmptyQuery(sql)) {
      this.#send(Buffer.concat([emptyMessage('I'), readyForQuery(this.#status())]));
      return;
    }
    // A simple query closes the unnamed statement and portal (PostgreSQL does the same).
    this.#statements.delete('');
    this.#portals.delete('');
    for (const statement of splitStatements(sql)) {
      try {
        const prepared = prepare(statement, []);
        const portal: Portal = { statement: prepared, params: undefined, resultFormats: [], sent: 0 };
        await this.#run(portal, true);
        this.#send(this.#rows(portal, 0, true));
      } catch (error) {
        if (error instanceof PgProtocolError) throw error;
        this.#send(errorResponse(errorFieldsOf(error)));
        break;
      }
    }
    this.#send(readyForQuery(this.#status()));
  }

  #parse(reader: PayloadReader): void {
    const name = reader.cstring();
    const sql = reader.cstring();
    const count = reader.int16();
    if (count < 0) throw new PgProtocolError('negative parameter type count');
    const oids: number[] = [];
    for (let i = 0; i < count; i++) oids.push(reader.int32());
    if (name !== '' && this.#statements.has(name)) {
      throw new PgError({
        severity: 'ERROR',
        sqlState: '42P05',
        message: `prepared statement "${name}" already exists`,
      });
    }
    if (splitStatements(sql).length > 1) {
      throw new PgError({
        severity: 'ERROR',
        sqlState: '42601',
        message: 'cannot insert multiple commands into a prepared statement',
      });
    }
    this.#statements.set(name, prepare(sql, oids));
    this.#send(emptyMessage('1'));
  }

  #bind(reader: PayloadReader): void {
    const portalName = reader.cstring();
    const statementName = reader.cstring();
    const statement = this.#statements.get(statementName);
    if (statement === undefined) {
      throw new PgError({
        severity: 'ERROR',
        sqlState: '26000',
        message: `prepared statement "${statementName}" does not exist`,
      });
    }
    const formats = readInt16s(reader);
    const count = reader.int16();
    if (count !== statement.paramOids.length) {
      throw new PgError({
        severity: 'ERROR',
        sqlState: '08P01',
        message: `bind message supplies ${count} parameters, but prepared statement "${statementName}" requires ${statement.paramOids.length}`,
      });
    }
    const params: Record<string, unknown> = {};
    for (let i = 0; i < count; i++) {
      const length = reader.int32();
      const bytes = length < 0 ? null : reader.bytes(length);
      const format = formats.length === 0 ? 0 : formats.length === 1 ? formats[0]! : formats[i]!;
      params[String(i + 1)] = decodeParam(statement.paramOids[i]!, format, bytes);
    }
    const resultFormats = readInt16s(reader);
    this.#portals.set(portalName, {
      statement,
      params: count === 0 ? undefined : params,
      resultFormats,
      sent: 0,
    });
    this.#send(emptyMessage('2'));
  }

  async #describe(reader: PayloadReader): Promise<void> {
    const kind = String.fromCharCode(reader.byte());
    const name = reader.cstring();
    if (kind === 'S') {
      const statement = this.#statements.get(name);
      if (statement === undefined) {
        throw new PgError({
          severity: 'ERROR',
          sqlState: '26000',
          message: `prepared statement "${name}" does not exist`,
        });
      }
      const parts = [parameterDescription(statement.paramOids)];
      const described = await this.#describeStatement(statement);
      parts.push(described === undefined ? emptyMessage('n') : rowDescription(columnsOf(described), []));
      this.#send(Buffer.concat(parts));
      return;
    }
    if (kind !== 'P') throw new PgProtocolError(`describe of ${JSON.stringify(kind)}`);
    const portal = this.#portals.get(name);
    if (portal === undefined)
      throw new PgError({ severity: 'ERROR', sqlState: '34000', message: `portal "${name}" does not exist` });
    await this.#run(portal, false);
    const page = portal.page;
    this.#send(
      page === undefined || page.names.length === 0
        ? emptyMessage('n')
        : rowDescription(columnsOf(page), formatsOf(portal, page)),
    );
  }

  /**
   * A statement's result columns before it is bound. A statement without parameters is run, so
   * an expression's column (`count(*)`, `avg(price)`) gets the type its values have — what a
   * dashboard needs to plot it; with parameters it is only prepared, and expressions read as text.
   */
  async #describeStatement(statement: Prepared): Promise<{ names: string[]; oids: number[] } | undefined> {
    if (statement.command !== undefined)
      return statement.command.kind === 'show' ? showColumns(statement.command.name) : undefined;
    if (statement.described !== undefined) return statement.described;
    const describeOnly = statement.paramOids.length > 0;
    const page = await this.#queryOrEmptyCatalog(statement, { describeOnly });
    statement.described = page.names.length === 0 ? undefined : { names: page.names, oids: page.oids };
    return statement.described;
  }

  async #execute(reader: PayloadReader): Promise<void> {
    const name = reader.cstring();
    const maxRows = reader.int32();
    const portal = this.#portals.get(name);
    if (portal === undefined)
      throw new PgError({ severity: 'ERROR', sqlState: '34000', message: `portal "${name}" does not exist` });
    await this.#run(portal, false);
    this.#send(this.#rows(portal, maxRows, false));
  }

  #close(reader: PayloadReader): void {
    const kind = String.fromCharCode(reader.byte());
    const name = reader.cstring();
    if (kind === 'S') this.#statements.delete(name);
    else if (kind === 'P') this.#portals.delete(name);
    else throw new PgProtocolError(`close of ${JSON.stringify(kind)}`);
    this.#send(emptyMessage('3'));
  }

  /** Makes the portal's page (once): a session command's answer, or the query's rows. */
  async #run(portal: Portal, simple: boolean): Promise<void> {
    if (portal.page !== undefined) return;
    const { command, described } = portal.statement;
    if (command !== undefined) {
      portal.page = this.#command(command);
      return;
    }
    const page = await this.#queryOrEmptyCatalog(
      portal.statement,
      portal.params === undefined ? {} : { params: portal.params },
    );
    if (page.notice !== undefined) {
      this.#send(errorResponse({ severity: 'NOTICE', sqlState: '00000', message: page.notice }, 'N'));
    }
    // The types the client was told at Describe stay: the rows are written as those.
    if (!simple && described !== undefined && described.oids.length === page.oids.length)
      page.oids = described.oids;
    portal.page = page;
  }

  /** #query, except that a catalog query SQLite cannot parse over a table walship keeps empty has no rows. */
  async #queryOrEmptyCatalog(
    statement: Prepared,
    options: { params?: Record<string, unknown>; describeOnly?: boolean },
  ): Promise<PgPage> {
    try {
      if (statement.rewriteError !== undefined) throw statement.rewriteError;
      return await this.#query(statement.sql, options);
    } catch (error) {
      const unparsable = isWalshipError(error, 'QUERY_INVALID') || error instanceof UnsupportedCastError;
      if (unparsable && readsEmptyCatalog(statement.sql)) return { names: [], oids: [], rows: [] };
      throw error;
    }
  }

  async #query(
    sql: string,
    options: { params?: Record<string, unknown>; describeOnly?: boolean },
  ): Promise<PgPage> {
    const controller = new AbortController();
    this.#running = controller;
    try {
      return await this.#options.runQuery(sql, {
        ...options,
        signal: controller.signal,
        session: this.#settings,
      });
    } finally {
      if (this.#running === controller) this.#running = undefined;
    }
  }

  /** A session command's result: a SHOW's one row, or no columns and the command's tag. */
  #command(command: SessionCommand): Page {
    switch (command.kind) {
      case 'set':
        if (command.name !== undefined && command.value !== undefined)
          this.#settings.set(command.name, command.value);
        return tagged(command.tag);
      case 'show': {
        const value = command.name === 'all' ? undefined : this.#settings.get(command.name);
        if (value === undefined) {
          throw new PgError({
            severity: 'ERROR',
            sqlState: '42704',
            message: `unrecognized configuration parameter "${command.name}"`,
          });
        }
        return { names: [command.name], oids: [25], rows: [[value]], tag: 'SHOW' };
      }
      case 'transaction':
        this.#inTransaction = command.tag === 'BEGIN';
        return tagged(command.tag);
      case 'ignored':
        return tagged(command.tag);
    }
  }

  /** RowDescription (simple protocol), the portal's next rows and CommandComplete or PortalSuspended. */
  #rows(portal: Portal, maxRows: number, simple: boolean): Buffer {
    const page = portal.page!;
    const parts: Buffer[] = [];
    if (page.names.length === 0) return commandComplete(page.tag ?? 'SELECT 0');
    const formats = formatsOf(portal, page);
    if (simple) parts.push(rowDescription(columnsOf(page), formats));
    const end = maxRows > 0 ? Math.min(page.rows.length, portal.sent + maxRows) : page.rows.length;
    parts.push(encodeDataRows(page.rows, page.oids, formats, portal.sent, end));
    portal.sent = end;
    if (end < page.rows.length) parts.push(emptyMessage('s'));
    else parts.push(commandComplete(page.tag ?? `SELECT ${page.rows.length}`));
    return Buffer.concat(parts);
  }

  #status(): 'I' | 'T' {
    return this.#inTransaction ? 'T' : 'I';
  }

  #send(bytes: Buffer): void {
    if (this.#phase !== 'closed') this.#socket.write(bytes);
  }

  #fatal(error: unknown): void {
    const fields: PgErrorFields =
      error instanceof PgProtocolError
        ? { severity: 'FATAL', sqlState: error.sqlState, message: error.message }
        : { severity: 'FATAL', sqlState: 'XX000', message: 'internal error' };
    this.#options.log?.(`pg: connection closed: ${fields.message}`);
    if (this.#phase !== 'closed') this.#socket.end(errorResponse(fields));
    this.#phase = 'closed';
    this.#running?.abort();
  }
}

/** An error answered with ErrorResponse; the connection stays. */
export class PgError extends Error {
  constructor(readonly fields: PgErrorFields) {
    super(fields.message);
  }
}

function prepare(sql: string, oids: readonly number[]): Prepared {
  const count = Math.max(parameterCount(sql), oids.length);
  const paramOids = Array.from({ length: count }, (_, i) => oids[i] ?? 0);
  const command = sessionCommandOf(sql);
  try {
    return { sql: rewriteForSqlite(sql), paramOids, command };
  } catch (error) {
    if (!(error instanceof UnsupportedCastError)) throw error;
    return { sql, rewriteError: error, paramOids, command };
  }
}

function tagged(tag: string): Page {
  return { names: [], oids: [], rows: [], tag };
}

function showColumns(name: string): { names: string[]; oids: number[] } {
  return { names: [name], oids: [25] };
}

function columnsOf(page: { names: string[]; oids: number[] }): { name: string; oid: number }[] {
  return page.names.map((name, i) => ({ name, oid: page.oids[i]! }));
}

function formatsOf(portal: Portal, page: Page): number[] {
  const f = portal.resultFormats;
  return page.names.map((_, i) => (f.length === 0 ? 0 : f.length === 1 ? f[0]! : (f[i] ?? 0)));
}

function readInt16s(reader: PayloadReader): number[] {
  const count = reader.int16();
  if (count < 0) throw new PgProtocolError('negative count');
  const values: number[] = [];
  for (let i = 0; i < count; i++) values.push(reader.int16());
  return values;
}

/** PostgreSQL's md5 password answer: "md5" + md5(md5(password + user) + salt). */
export function md5Response(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5')
    .update(password + user)
    .digest('hex');
  return `md5${createHash('md5')
    .update(Buffer.concat([Buffer.from(inner), salt]))
    .digest('hex')}`;
}

/** A failure as ErrorResponse fields, with PostgreSQL's SQLSTATE for each walship code. */
export function errorFieldsOf(error: unknown): PgErrorFields {
  if (error instanceof PgError) return error.fields;
  if (error instanceof PgValueError || error instanceof UnsupportedCastError) {
    return { severity: 'ERROR', sqlState: error.sqlState, message: error.message };
  }
  if (!isWalshipError(error)) return { severity: 'ERROR', sqlState: 'XX000', message: 'internal error' };
  const position = typeof error.details.position === 'number' ? error.details.position + 1 : undefined;
  const at = position === undefined ? {} : { position };
  switch (error.code) {
    case 'QUERY_INVALID': {
      const sqlState = /no such table/.test(error.message)
        ? '42P01'
        : /no such column/.test(error.message)
          ? '42703'
          : /no such function/.test(error.message)
            ? '42883'
            : '42601';
      return { severity: 'ERROR', sqlState, message: error.message, ...at };
    }
    case 'QUERY_READ_ONLY':
      return { severity: 'ERROR', sqlState: '25006', message: error.message };
    case 'QUERY_TOO_LARGE':
      return { severity: 'ERROR', sqlState: '54000', message: error.message };
    case 'QUERY_TIMEOUT':
    case 'QUERY_ABORTED':
      return { severity: 'ERROR', sqlState: '57014', message: error.message };
    case 'QUERY_BUSY':
      return { severity: 'ERROR', sqlState: '53000', message: error.message };
    case 'MIN_TXN_TIMEOUT':
      return { severity: 'ERROR', sqlState: '57014', message: error.message };
    default:
      return {
        severity: 'ERROR',
        sqlState:
          error.kind === 'unavailable' || error.kind === 'closed'
            ? '57P03'
            : error.kind === 'invalid'
              ? '22023'
              : 'XX000',
        message: error.message,
      };
  }
}
