/**
 * The XML of WebDAV's PROPFIND (RFC 4918 §9.1, §14): reading what a request asks for, and writing the 207
 * Multi-Status answer. Only the little XML that a propfind body is, read by a small tokenizer rather than a
 * general parser, and each trap named:
 *
 * - **Entities**: a DOCTYPE (and with it any entity, the "billion laughs") is refused outright; only the five
 *   predefined entities and character references mean anything, and property names carry none.
 * - **Namespaces**: a property is its namespace and local name (`DAV:` `getetag`), whatever prefix the client
 *   chose; prefixes are resolved per element as declared (`xmlns`, `xmlns:p`), default namespace included.
 * - **Not well formed**: an end tag that does not close the open element, an undeclared prefix, or text where
 *   an element was expected is a 400, as RFC 4918 §9.1 says, never a guess.
 * - **Size**: the route bounds the body (64 KiB); the tokenizer is linear in it.
 */
import { RepomanError } from '@repoman/core';

export const DAV = 'DAV:';
/** dCache's namespace, where grid tools look for `Checksums` (RFC 3230 `Digest` values). */
export const DCACHE = 'http://www.dcache.org/2013/webdav';

/** A property's name: its namespace and local name. */
export interface PropName {
  ns: string;
  local: string;
}

/** What a PROPFIND asks for: every property, the names alone, or these properties. */
export type PropfindRequest =
  | { kind: 'allprop' }
  | { kind: 'propname' }
  | { kind: 'prop'; names: PropName[] };

const bad = (why: string) => new RepomanError('bad_request', `The PROPFIND body is not valid: ${why}`);

interface OpenElement {
  qname: string;
  name: PropName;
  /** Prefix → namespace declared on this element. */
  scope: Map<string, string>;
  children: PropName[];
}

/** The PROPFIND body's request (an empty body asks for every property, RFC 4918 §9.1). */
export function parsePropfind(body: string): PropfindRequest {
  if (body.trim() === '') return { kind: 'allprop' };
  if (/<!DOCTYPE|<!ENTITY/i.test(body)) throw bad('a DOCTYPE or an entity declaration is not accepted');
  const stack: OpenElement[] = [];
  let root: OpenElement | undefined;
  let propfindChildren: OpenElement[] = [];
  const tag =
    /<(\/?)([^\s/>]+)((?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>|<\?[\s\S]*?\?>|<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>/g;
  let at = 0;
  for (let match = tag.exec(body); match; match = tag.exec(body)) {
    const between = body.slice(at, match.index);
    if (/</.test(between)) throw bad('a tag could not be read');
    if (between.trim() !== '' && stack.length === 0) throw bad('text outside the root element');
    at = tag.lastIndex;
    if (match[2] === undefined) continue; // a declaration, processing instruction, comment or CDATA
    const [, closing, qname, attributes = '', selfClosing] = match;
    if (closing) {
      const open = stack.pop();
      if (!open || open.qname !== qname) throw bad(`</${qname}> closes no open element`);
      if (stack.length === 1 && stack[0]?.name.local === 'propfind') propfindChildren.push(open);
      else stack.at(-1)?.children.push(open.name);
      continue;
    }
    const scope = new Map<string, string>();
    for (const attribute of attributes.matchAll(/([^\s=]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
      const [, key = '', double, single] = attribute;
      const value = double ?? single ?? '';
      if (key === 'xmlns') scope.set('', value);
      else if (key.startsWith('xmlns:')) scope.set(key.slice(6), value);
    }
    const element: OpenElement = { qname, name: { ns: '', local: '' }, scope, children: [] };
    element.name = qualified(qname, [...stack, element]);
    if (!root) {
      root = element;
      if (element.name.ns !== DAV || element.name.local !== 'propfind')
        throw bad('its root element is not DAV:propfind');
    } else if (stack.length === 0) throw bad('it has two root elements');
    if (selfClosing) {
      if (stack.length === 1) propfindChildren.push(element);
      else stack.at(-1)?.children.push(element.name);
    } else stack.push(element);
  }
  if (body.slice(at).trim() !== '') throw bad('it ends inside a tag or with text');
  if (stack.length > 0 || !root) throw bad('an element is not closed');
  propfindChildren = propfindChildren.filter((child) => child.name.ns === DAV);
  const first = propfindChildren[0];
  if (!first) return { kind: 'allprop' };
  if (first.name.local === 'propname') return { kind: 'propname' };
  if (first.name.local === 'prop') return { kind: 'prop', names: first.children };
  return { kind: 'allprop' }; // allprop (its include asks for nothing we would not send)
}

/** A prefixed name resolved against the open elements' declarations. */
function qualified(qname: string, open: OpenElement[]): PropName {
  const colon = qname.indexOf(':');
  const prefix = colon < 0 ? '' : qname.slice(0, colon);
  const local = colon < 0 ? qname : qname.slice(colon + 1);
  for (let i = open.length - 1; i >= 0; i--) {
    const ns = open[i]?.scope.get(prefix);
    if (ns !== undefined) return { ns, local };
  }
  if (prefix === '') return { ns: '', local };
  throw bad(`the prefix '${prefix}' is not declared`);
}

export const escapeXml = (text: string) =>
  text.replace(/[<>&"']/g, (c) => `&${{ '<': 'lt', '>': 'gt', '&': 'amp', '"': 'quot', "'": 'apos' }[c]};`);

/** One resource of a Multi-Status answer: its path and its properties (XML content, already escaped). */
export interface DavResource {
  href: string;
  props: Map<string, { name: PropName; xml: string }>;
}

/** Builds a resource's property map: `[namespace, local name, XML content]`. */
export function davResource(href: string, props: [string, string, string][]): DavResource {
  return {
    href,
    props: new Map(props.map(([ns, local, xml]) => [`${ns} ${local}`, { name: { ns, local }, xml }])),
  };
}

const PREFIXES: Record<string, string> = { [DAV]: 'd', [DCACHE]: 'dc' };

function element(name: PropName, xml: string): string {
  const prefix = PREFIXES[name.ns];
  const qname = prefix ? `${prefix}:${name.local}` : `x:${name.local}`;
  const declare = prefix ? '' : ` xmlns:x="${escapeXml(name.ns)}"`;
  return xml === '' ? `<${qname}${declare}/>` : `<${qname}${declare}>${xml}</${qname}>`;
}

/** The 207 Multi-Status body for these resources, answering `request`. */
export function multistatus(resources: DavResource[], request: PropfindRequest): string {
  const out = [
    '<?xml version="1.0" encoding="utf-8"?>\n',
    `<d:multistatus xmlns:d="${DAV}" xmlns:dc="${DCACHE}">\n`,
  ];
  for (const resource of resources) {
    const found: string[] = [];
    const missing: string[] = [];
    if (request.kind === 'prop') {
      for (const name of request.names) {
        const prop = resource.props.get(`${name.ns} ${name.local}`);
        if (prop) found.push(element(name, prop.xml));
        else missing.push(element(name, ''));
      }
    } else {
      for (const prop of resource.props.values())
        found.push(element(prop.name, request.kind === 'propname' ? '' : prop.xml));
    }
    out.push(`<d:response><d:href>${escapeXml(resource.href)}</d:href>`);
    if (found.length > 0 || missing.length === 0)
      out.push(
        `<d:propstat><d:prop>${found.join('')}</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>`,
      );
    if (missing.length > 0)
      out.push(
        `<d:propstat><d:prop>${missing.join('')}</d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>`,
      );
    out.push('</d:response>\n');
  }
  out.push('</d:multistatus>\n');
  return out.join('');
}
