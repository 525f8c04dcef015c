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
 * - **Size**: the route bounds the body (64 KiB); the scan is linear in it (each construct's end found with
 *   indexOf, never by a pattern that backtracks), and a request names at most 64 distinct properties, so the
 *   answer to a small body cannot be large.
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

/** A property request names at most this many distinct properties (RFC 4918's live ones are fifteen). */
export const MAX_PROPERTIES = 64;
/** A propfind body nests four deep; resolving a prefix walks the open elements, so their depth is bounded. */
const MAX_DEPTH = 32;

/** An XML name, optionally prefixed (`D:getetag`), in the ASCII most WebDAV names use and beyond. */
const QNAME =
  /^[A-Za-z_\u00c0-\uffff][\w.\-\u00b7\u00c0-\uffff]*(?::[A-Za-z_\u00c0-\uffff][\w.\-\u00b7\u00c0-\uffff]*)?$/;
/** One attribute of a start tag: `name="value"` or `name='value'`, with the spaces XML allows around `=`. */
const ATTRIBUTE = /\s*([^\s=]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/y;

/**
 * The PROPFIND body's request (an empty body asks for every property, RFC 4918 §9.1). One pass over the body:
 * each `<` is found with indexOf and its construct's end with indexOf from there, so the work is linear in the
 * body's length whatever it holds (no backtracking pattern sees more than one tag's attributes).
 */
export function parsePropfind(body: string): PropfindRequest {
  if (body.trim() === '') return { kind: 'allprop' };
  if (/<!DOCTYPE|<!ENTITY/i.test(body)) throw bad('a DOCTYPE or an entity declaration is not accepted');
  const stack: OpenElement[] = [];
  let root: OpenElement | undefined;
  const propfindChildren: OpenElement[] = [];
  const endOf = (from: number, close: string, what: string) => {
    const at = body.indexOf(close, from);
    if (at < 0) throw bad(`${what} is not closed`);
    return at + close.length;
  };
  let at = 0;
  while (at < body.length) {
    const open = body.indexOf('<', at);
    const text = body.slice(at, open < 0 ? body.length : open);
    if (text.trim() !== '' && stack.length === 0) throw bad('it has text outside its root element');
    if (open < 0) break;
    if (body.startsWith('<?', open)) at = endOf(open + 2, '?>', 'a processing instruction');
    else if (body.startsWith('<!--', open)) at = endOf(open + 4, '-->', 'a comment');
    else if (body.startsWith('<![CDATA[', open)) at = endOf(open + 9, ']]>', 'a CDATA section');
    else {
      const close = body.indexOf('>', open + 1);
      if (close < 0) throw bad('it ends inside a tag');
      at = close + 1;
      const inner = body.slice(open + 1, close);
      if (inner.includes('<')) throw bad('a tag could not be read');
      if (inner.startsWith('/')) closeElement(inner.slice(1).trim());
      else openElement(inner);
    }
  }
  if (stack.length > 0 || !root) throw bad('an element is not closed');

  function closeElement(qname: string) {
    const element = stack.pop();
    if (!element || element.qname !== qname) throw bad(`</${qname}> closes no open element`);
    placed(element);
  }

  function openElement(inner: string) {
    const selfClosing = inner.endsWith('/');
    const tag = selfClosing ? inner.slice(0, -1) : inner;
    const nameEnd = tag.search(/\s|$/);
    const qname = tag.slice(0, nameEnd);
    if (!QNAME.test(qname)) throw bad(`'${qname.slice(0, 40)}' is not an element name`);
    const scope = new Map<string, string>();
    for (let from = nameEnd; from < tag.length; ) {
      ATTRIBUTE.lastIndex = from;
      const attribute = ATTRIBUTE.exec(tag);
      if (!attribute) {
        if (tag.slice(from).trim() !== '') throw bad(`the attributes of <${qname}> could not be read`);
        break;
      }
      from = ATTRIBUTE.lastIndex;
      const [, key = '', double, single] = attribute;
      const value = double ?? single ?? '';
      if (key === 'xmlns') scope.set('', value);
      else if (key.startsWith('xmlns:')) scope.set(key.slice(6), value);
    }
    if (stack.length >= MAX_DEPTH) throw bad(`its elements nest more than ${MAX_DEPTH} deep`);
    const element: OpenElement = { qname, name: { ns: '', local: '' }, scope, children: [] };
    element.name = qualified(qname, scope, stack);
    if (!root) {
      root = element;
      if (element.name.ns !== DAV || element.name.local !== 'propfind')
        throw bad('its root element is not DAV:propfind');
    } else if (stack.length === 0) throw bad('it has two root elements');
    if (selfClosing) placed(element);
    else stack.push(element);
  }

  /** A complete element: a child of propfind, or a name inside its parent (`prop`'s are the properties). */
  function placed(element: OpenElement) {
    const parent = stack.at(-1);
    if (!parent) return; // the root itself
    if (parent === root) propfindChildren.push(element);
    else if (!parent.children.some((c) => c.ns === element.name.ns && c.local === element.name.local)) {
      parent.children.push(element.name);
      if (parent.children.length > MAX_PROPERTIES)
        throw bad(`it asks for more than ${MAX_PROPERTIES} properties`);
    }
  }

  const first = propfindChildren.find((child) => child.name.ns === DAV);
  if (!first) return { kind: 'allprop' };
  if (first.name.local === 'propname') return { kind: 'propname' };
  if (first.name.local === 'prop') return { kind: 'prop', names: first.children };
  return { kind: 'allprop' }; // allprop (its include asks for nothing we would not send)
}

/** A prefixed name resolved against its own element's declarations, then those of the open elements. */
function qualified(qname: string, own: Map<string, string>, open: OpenElement[]): PropName {
  const colon = qname.indexOf(':');
  const prefix = colon < 0 ? '' : qname.slice(0, colon);
  const local = colon < 0 ? qname : qname.slice(colon + 1);
  const declared = own.get(prefix);
  if (declared !== undefined) return { ns: declared, local };
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
