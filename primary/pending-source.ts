import { WalshipError } from '../core/index.js';
import type { TableStore } from '../table/index.js';
import type { PendingSource } from './uploader.js';

/** The uploader's view of a node's database: the pending queue and the uploaded watermarks. */
export function pendingSourceOf(tables: TableStore): PendingSource {
  return {
    pendingSummary: () => tables.pendingSummary(),
    pending: (table: string, options: { limitBytes: number; afterTxn?: bigint }) =>
      tables.pending(table, options),
    markUploaded: (table: string, txn: bigint) =>
      tables.transaction(() => {
        tables.setUploadedTxn(table, txn);
        tables.dropPendingThrough(table, txn);
      }),
    uploadedTxn: (table: string) => tables.uploadedTxn(table),
    uploadedAll: () =>
      tables
        .schemas()
        .map((schema) => ({ table: schema.name, uploadedTxn: tables.uploadedTxn(schema.name) })),
    tableKey: (table: string) => {
      const schema = tables.schema(table);
      if (schema === undefined) throw new WalshipError('UNKNOWN_TABLE', 'internal', `no schema for ${table}`);
      return schema.key;
    },
  };
}
