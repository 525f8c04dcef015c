/**
 * HEPiX image lists (the format of `hepix-virtualisation/image_list_format_docbook`, with the fields EGI AppDB's
 * VO-wide lists add): pure functions from what a list holds to the JSON document that is signed and served.
 *
 * Traps, each named where it is handled:
 * - The document is signed as text, and an endorser's copy must be byte for byte the server's (line ends
 *   aside): keys come in one fixed order and the text is made by `listText` only.
 * - Consumers (vmcatcher, cloudkeeper) read some keys unconditionally: every key is present, an empty string
 *   where Repoman has no value, never null or missing.
 * - `hv:size` is an integer, every other value a string (`hv:version` too), as the format's examples have them.
 */

/** Who signs a list: the list-level `hv:endorser`. DNs in slash form, as grid tools print them. */
export interface ListSigner {
  /** A name for people: the certificate's CN. */
  name: string;
  dn: string;
  ca: string;
  email: string;
}

/** One endorsed version, as a list shows it. */
export interface ListEntry {
  /** The image's UUID: stable across versions, so that subscribed sites follow a new endorsed version. */
  identifier: string;
  title: string;
  description: string;
  /** The pinned version URL a consumer without a certificate can download (a capability URL if private). */
  uri: string;
  size: number;
  sha512: string;
  version: number;
  /** `QCOW2`, `RAW`, `VMDK`, `OVA`...: the stored format, upper-case as AppDB writes it. */
  format: string;
  hypervisor: string;
  os: string;
  osName: string;
  osVersion: string;
  arch: string;
  comments: string;
  /** AppDB's fields: the group (VO), the image's page, and the endorser. */
  group: string;
  imageUrl: string;
  endorser: { fullName: string; id: string; url: string };
}

export interface ListHead {
  identifier: string;
  title: string;
  description: string;
  /** The repository's URL. */
  source: string;
  /** The list's own URL. */
  uri: string;
  /** The group (VO) for a group's list; absent for an image's own list. */
  vo?: string;
  created: Date;
  expires: Date;
  version: number;
  signer: ListSigner;
}

/** ISO 8601 UTC to the second, as the format's examples write dates (`2027-06-30T00:00:00Z`). */
export const listDate = (date: Date) => `${date.toISOString().slice(0, 19)}Z`;

function imageOf(entry: ListEntry): Record<string, string | number> {
  return {
    'ad:group': entry.group,
    'ad:mpuri': entry.imageUrl,
    'ad:user:fullname': entry.endorser.fullName,
    'ad:user:guid': entry.endorser.id,
    'ad:user:uri': entry.endorser.url,
    'dc:description': entry.description,
    'dc:identifier': entry.identifier,
    'dc:title': entry.title,
    'hv:format': entry.format,
    'hv:hypervisor': entry.hypervisor,
    'hv:size': entry.size,
    'hv:uri': entry.uri,
    'hv:version': String(entry.version),
    'sl:arch': entry.arch,
    'sl:checksum:sha512': entry.sha512,
    'sl:comments': entry.comments,
    'sl:os': entry.os,
    'sl:osname': entry.osName,
    'sl:osversion': entry.osVersion,
  };
}

/** The document `{"hv:imagelist": {...}}`. */
export function listDocument(head: ListHead, entries: readonly ListEntry[]) {
  return {
    'hv:imagelist': {
      ...(head.vo === undefined ? {} : { 'ad:vo': head.vo }),
      'dc:date:created': listDate(head.created),
      'dc:date:expires': listDate(head.expires),
      'dc:description': head.description,
      'dc:identifier': head.identifier,
      'dc:source': head.source,
      'dc:title': head.title,
      'hv:endorser': {
        'hv:x509': {
          'dc:creator': head.signer.name,
          'hv:ca': head.signer.ca,
          'hv:dn': head.signer.dn,
          'hv:email': head.signer.email,
        },
      },
      'hv:images': entries.map((entry) => ({ 'hv:image': imageOf(entry) })),
      'hv:uri': head.uri,
      'hv:version': String(head.version),
    },
  };
}

/** The text that is signed and served: the document, indented by two, ending in one line end. */
export const listText = (document: ReturnType<typeof listDocument>) =>
  `${JSON.stringify(document, null, 2)}\n`;

/** Line ends aside (an S/MIME signature covers the text with CRLF line ends): the same text? */
export const sameText = (a: string, b: string) => a.replace(/\r\n/g, '\n') === b.replace(/\r\n/g, '\n');
