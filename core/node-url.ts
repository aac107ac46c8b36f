/**
 * The URL a node advertises — in the epoch record it claims, in its registration, on its status
 * page — derived in this one place so they all agree: `node.url` when it is set, else its HTTP
 * listener's, with a wildcard host (0.0.0.0, ::) shown as loopback. Once the listener is bound,
 * `boundPort` replaces a port of 0 (listen on any free port) by the port it got.
 */
export function nodeUrl(
  listener: { host: string; port: number; tls?: unknown },
  configured: string | undefined,
  boundPort?: number,
): string {
  const url = configured ?? derived(listener);
  if (boundPort === undefined) return url;
  try {
    const parsed = new URL(url);
    if (parsed.port !== '0') return url;
    parsed.port = String(boundPort);
    return parsed.origin;
  } catch {
    return url;
  }
}

function derived(listener: { host: string; port: number; tls?: unknown }): string {
  const scheme = listener.tls === undefined ? 'http' : 'https';
  const host =
    listener.host === '0.0.0.0' ? '127.0.0.1' : listener.host === '::' ? '[::1]' : hostPart(listener.host);
  return `${scheme}://${host}:${listener.port}`;
}

/** An IPv6 literal goes in brackets in a URL. */
function hostPart(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}
