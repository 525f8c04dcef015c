/** One image: its metadata, digests, versions, URLs and the commands that fetch or boot it. */
import { Fragment } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, call, type Image, plainHttp } from '../api/client';
import type { components } from '../api/schema';
import { bytes, date, shellQuote } from '../lib/format';
import { imagePath } from '../lib/router';
import { isAdmin, type Session, userName } from '../lib/session';
import { Badges, Copyable, ErrorBox, Loading, Notice, useAction, useAsync } from '../lib/ui';
import { endorsableGroups, endorseHref } from './group';

/**
 * What the signed-in user may do to the image, as far as the page can tell (the server decides; this only
 * hides what would be refused): change it, share it (and make it public), delete it.
 */
export function rightsOn(session: Session, image: Image) {
  if (session.kind !== 'user') return { change: false, share: false, remove: false };
  const has = (p: string) => (session.user.permissions ?? []).includes(p);
  const own = image.owner === session.user.user_name || isAdmin(session);
  return {
    change: own || has('image_modify') || has('image_modify_group'),
    share: own,
    remove: own || has('image_delete') || has('image_delete_group'),
  };
}

export function ImagePage({ session, owner, name }: { session: Session; owner: string; name: string }) {
  const path = { user: owner, image: name };
  const image = useAsync(
    () => call(api.GET('/api/images/{user}/{image}', { params: { path } })),
    [owner, name],
  );
  if (image.loading && !image.data) return <Loading what={`${owner}/${name}`} />;
  if (!image.data)
    return (
      <section>
        <h1>
          {owner}/{name}
        </h1>
        <ErrorBox error={image.error} title="This image could not be shown." />
        <p>
          <a href="/">Back to the images</a>
        </p>
      </section>
    );
  const data = image.data;
  const rights = rightsOn(session, data);
  const changeable = rights.change;
  return (
    <section>
      <p class="crumbs">
        <a href="/">Images</a> / {data.owner}
      </p>
      <div class="title-row">
        <div class="actions">
          <h1>{data.name}</h1>
          <Badges image={data} me={isAdmin(session) ? null : userName(session)} />
        </div>
        {(changeable || rights.remove) && (
          <div class="actions">
            <a class="button" href={`${imagePath(data.owner, data.name)}/edit`}>
              {rights.share ? 'Edit and share' : 'Edit'}
            </a>
            {!data.read_only && changeable && (
              <a
                class="button primary"
                href={`/upload?owner=${encodeURIComponent(data.owner)}&image=${encodeURIComponent(data.name)}`}
              >
                Upload a new version
              </a>
            )}
          </div>
        )}
      </div>
      {data.description && <p class="lead">{data.description}</p>}
      <Details image={data} />
      {data.raw_file_uploaded && <Endorse image={data} groups={endorsableGroups(session)} />}
      <Access image={data} />
      <Commands image={data} />
      {session.kind === 'user' && data.raw_file_uploaded && (
        <Versions image={data} changeable={changeable && !data.read_only} onChange={image.reload} />
      )}
    </section>
  );
}

function Details({ image }: { image: Image }) {
  const rows: [string, string | number | null | undefined][] = [
    ['Owner', image.owner],
    [
      'Size',
      image.raw_file_uploaded ? `${bytes(image.size)} (${image.size} bytes)` : 'no bytes uploaded yet',
    ],
    ['Format', image.disk_format],
    [
      'Virtual size',
      image.virtual_size ? `${bytes(image.virtual_size)} (${image.virtual_size} bytes)` : null,
    ],
    ['Compression', image.compression],
    ['Partition table', image.partition_table],
    ['Version', image.version || null],
    ['OS type', image.os_type],
    ['OS variant', image.os_variant],
    ['Architecture', image.os_arch],
    ['Hypervisor', image.hypervisor],
    ['Uploaded', image.uploaded ? date(image.uploaded) : null],
    ['Modified', date(image.modified)],
    ['Created', date(image.created)],
    ['Expires', image.expires ? `${date(image.expires)}${image.expired ? ' (expired)' : ''}` : 'never'],
    ['Read-only', image.read_only ? 'yes: no new versions, no deletion' : 'no'],
    ['Public', image.unauthenticated_access ? 'yes: anyone may download it, also over plain HTTP' : 'no'],
  ];
  const shared = image.shared_with;
  if (shared) {
    rows.push(['Shared with users', shared.users?.length ? shared.users.join(', ') : 'nobody']);
    rows.push(['Shared with groups', shared.groups?.length ? shared.groups.join(', ') : 'none']);
  }
  return (
    <>
      <h2>Details</h2>
      <dl class="details">
        {rows
          .filter(([, value]) => value !== null && value !== undefined && value !== '')
          .map(([label, value]) => (
            <div key={label}>
              <dt>{label}</dt>
              <dd>{value}</dd>
            </div>
          ))}
      </dl>
      {image.digests && (
        <>
          <h2>Digests</h2>
          <dl class="details digests">
            {(['sha256', 'sha512', 'md5', 'adler32'] as const).map((algorithm) => {
              const value = image.digests?.[algorithm];
              return value ? (
                <div key={algorithm}>
                  <dt>
                    {{ sha256: 'SHA-256', sha512: 'SHA-512', md5: 'MD5', adler32: 'ADLER32' }[algorithm]}
                  </dt>
                  <dd>
                    <Copyable text={value} label={`the ${algorithm}`} />
                  </dd>
                </div>
              ) : null;
            })}
          </dl>
        </>
      )}
    </>
  );
}

/** For endorsers: to the endorsement form of each group they may endorse for, with the image filled in. */
function Endorse({ image, groups }: { image: Image; groups: string[] }) {
  if (groups.length === 0) return null;
  return (
    <p class="muted">
      Endorse this version for a group’s image list:{' '}
      {groups.map((group, i) => (
        <Fragment key={group}>
          {i > 0 && ', '}
          <a
            href={endorseHref(group, image.owner, image.name)}
            aria-label={`Endorse this version for ${group}`}
          >
            {group}
          </a>
        </Fragment>
      ))}
    </p>
  );
}

function Access({ image }: { image: Image }) {
  if (!image.raw_file_uploaded) return null;
  return (
    <>
      <h2>Download</h2>
      <dl class="details">
        <div>
          <dt>HTTPS</dt>
          <dd>
            <Copyable text={image.file_url} label="the HTTPS URL" />
            {!plainHttp && !image.expired && (
              <a class="button small" href={image.file_url} download={image.name}>
                Download
              </a>
            )}
          </dd>
        </div>
        {image.http_file_url && (
          <div>
            <dt>HTTP</dt>
            <dd>
              <Copyable text={image.http_file_url} label="the HTTP URL" />
              {plainHttp && !image.expired && (
                <a class="button small" href={image.http_file_url} download={image.name}>
                  Download
                </a>
              )}
            </dd>
          </div>
        )}
      </dl>
    </>
  );
}

function Commands({ image }: { image: Image }) {
  if (!image.raw_file_uploaded) return null;
  const file = shellQuote(image.name);
  const https = shellQuote(image.file_url);
  const open = image.http_file_url ? shellQuote(image.http_file_url) : null;
  // Grid CAs are rarely in the system's trust store: the grid's CA directory is named, as grid tools do.
  const cert =
    '--cert ~/.globus/usercert.pem --key ~/.globus/userkey.pem --capath /etc/grid-security/certificates';
  const commands: [string, string][] = [
    ['repoman', `repoman get-image ${shellQuote(`${image.owner}/${image.name}`)}`],
    ['curl', open ? `curl -fL -o ${file} ${open}` : `curl -fL ${cert} -o ${file} ${https}`],
    [
      'wget',
      open
        ? `wget -O ${file} ${open}`
        : `wget --certificate ~/.globus/usercert.pem --private-key ~/.globus/userkey.pem --ca-directory /etc/grid-security/certificates -O ${file} ${https}`,
    ],
  ];
  if (open) {
    commands.push(['qemu-img', `qemu-img info ${open}`]);
    commands.push([
      'OpenStack',
      `openstack image create --import-method web-download --uri ${open} --disk-format ${image.disk_format === 'raw' || !image.disk_format ? 'raw' : image.disk_format} --container-format bare ${file}`,
    ]);
  }
  return (
    <>
      <h2>Commands</h2>
      {!open && (
        <Notice>
          qemu-img and cloud image importers fetch images without a certificate: make the image public (Edit)
          to get their commands, or download it first.
        </Notice>
      )}
      <dl class="commands">
        {commands.map(([tool, command]) => (
          <div key={tool}>
            <dt>{tool}</dt>
            <dd>
              <Copyable text={command} label={`the ${tool} command`} />
            </dd>
          </div>
        ))}
      </dl>
    </>
  );
}

function Versions({
  image,
  changeable,
  onChange,
}: {
  image: Image;
  changeable: boolean;
  onChange: () => void;
}) {
  const path = { user: image.owner, image: image.name };
  const versions = useAsync(
    () => call(api.GET('/api/images/{user}/{image}/versions', { params: { path } })),
    [image.owner, image.name, image.version, image.modified],
  );
  const action = useAction();
  const rollback = (version: number) =>
    action.run(async () => {
      await call(api.POST('/api/images/{user}/{image}/rollback', { params: { path }, body: { version } }));
      onChange();
      versions.reload();
      return undefined;
    });
  return (
    <>
      <h2>Versions</h2>
      <ErrorBox error={versions.error ?? action.error} />
      {versions.data && (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col">Uploaded</th>
                <th scope="col">Size</th>
                <th scope="col">Format</th>
                <th scope="col">SHA-256</th>
                <th scope="col">Converted</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {(versions.data.items ?? []).map((v) => (
                <tr key={v.version}>
                  <td class="number">
                    {v.version} {v.current && <span class="badge">current</span>}
                  </td>
                  <td>{date(v.created)}</td>
                  <td class="number">{bytes(v.size)}</td>
                  <td>{v.disk_format ?? '—'}</td>
                  <td>
                    <code class="hash" title={v.digests?.sha256}>
                      {v.digests?.sha256?.slice(0, 16)}…
                    </code>
                  </td>
                  <td>
                    {(v.variants ?? []).length === 0
                      ? '—'
                      : (v.variants ?? []).map((variant) => (
                          <a
                            key={`${variant.format}`}
                            class="variant"
                            href={variant.file_url}
                            download={`${image.name}.${variant.format}`}
                          >
                            {variant.format}
                            {variant.compressed ? ' (compressed)' : ''}, {bytes(variant.size)}
                            <span class="visually-hidden"> of version {v.version}</span>
                          </a>
                        ))}
                  </td>
                  <td class="actions">
                    <a class="button small" href={v.file_url} download={image.name}>
                      Download<span class="visually-hidden"> version {v.version}</span>
                    </a>
                    {changeable && !v.current && (
                      <button
                        type="button"
                        class="small"
                        disabled={action.busy}
                        onClick={() => rollback(v.version as number)}
                      >
                        Roll back<span class="visually-hidden"> to version {v.version}</span>
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {changeable && versions.data && (
        <Convert
          image={image}
          versions={(versions.data.items ?? []).map((v) => v.version as number)}
          onDone={versions.reload}
        />
      )}
    </>
  );
}

type Job = components['schemas']['Job'];
const FORMATS = ['qcow2', 'raw', 'vmdk'] as const;

/** A converted variant of a version: asked for, then followed until the job ends ([formats.md]). */
function Convert({ image, versions, onDone }: { image: Image; versions: number[]; onDone: () => void }) {
  const [job, setJob] = useState<Job | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [format, setFormat] = useState<(typeof FORMATS)[number]>(
    image.disk_format === 'qcow2' ? 'raw' : 'qcow2',
  );
  useEffect(() => {
    if (!job || job.state === 'succeeded' || job.state === 'failed' || job.state === 'cancelled') return;
    const timer = setTimeout(async () => {
      try {
        const next = await call(api.GET('/api/jobs/{id}', { params: { path: { id: job.id } } }));
        setJob(next);
        if (next.state === 'succeeded') onDone();
      } catch (failure) {
        setError(failure);
      }
    }, 1000);
    return () => clearTimeout(timer);
  }, [job, onDone]);
  const submit = async (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    setError(null);
    setJob(null);
    try {
      const answer = (await call(
        api.POST('/api/images/{user}/{image}/conversions', {
          params: { path: { user: image.owner, image: image.name } },
          body: {
            format,
            version: Number(form.get('version')),
            ...(format === 'qcow2' ? { compress: form.get('compress') === 'on' } : {}),
          },
        }),
      )) as unknown as { job?: Job; variant?: unknown };
      if (answer.job) setJob(answer.job);
      else onDone(); // the variant exists already
    } catch (failure) {
      setError(failure);
    }
  };
  const running = job && (job.state === 'queued' || job.state === 'running');
  return (
    <form class="inline convert" onSubmit={submit}>
      <label for="convert-version">Convert version</label>
      <select id="convert-version" name="version">
        {versions.map((v) => (
          <option key={v} value={v}>
            {v}
          </option>
        ))}
      </select>
      <label for="convert-format">to</label>
      <select
        id="convert-format"
        name="format"
        value={format}
        onChange={(e) => setFormat((e.currentTarget as HTMLSelectElement).value as typeof format)}
      >
        {FORMATS.map((f) => (
          <option key={f}>{f}</option>
        ))}
      </select>
      {format === 'qcow2' && (
        <label class="check">
          <input type="checkbox" name="compress" /> compressed
        </label>
      )}
      <button type="submit" disabled={Boolean(running)}>
        Convert
      </button>
      {job && (
        <span role="status">
          {running && <progress max={1} value={job.progress} aria-label="Conversion progress" />}{' '}
          {job.state === 'succeeded'
            ? `Converted to ${job.format}: download it from the table.`
            : job.state === 'failed'
              ? `The conversion failed: ${job.error?.message ?? 'no reason given'}`
              : `${job.state} ${Math.round(job.progress * 100)}%`}
        </span>
      )}
      <ErrorBox error={error} title="The conversion was not started." />
    </form>
  );
}
