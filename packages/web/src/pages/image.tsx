/** One image: its metadata, digests, versions, URLs and the commands that fetch or boot it. */
import { useState } from 'preact/hooks';
import { api, call, type Image, plainHttp } from '../api/client';
import { bytes, date, shellQuote } from '../lib/format';
import { imagePath } from '../lib/router';
import { isAdmin, type Session, userName } from '../lib/session';
import { Badges, Copyable, ErrorBox, Loading, Notice, useAsync } from '../lib/ui';

/** Whether the signed-in user may change the image (the server decides; this only hides useless buttons). */
export function mayChange(session: Session, image: Image): boolean {
  if (session.kind !== 'user') return false;
  const permissions = session.user.permissions ?? [];
  return image.owner === session.user.user_name || isAdmin(session) || permissions.includes('image_modify');
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
  const changeable = mayChange(session, data);
  return (
    <section>
      <p class="crumbs">
        <a href="/">Images</a> / {data.owner}
      </p>
      <div class="title-row">
        <h1>
          {data.name} <Badges image={data} me={isAdmin(session) ? null : userName(session)} />
        </h1>
        {changeable && (
          <div class="actions">
            <a class="button" href={`${imagePath(data.owner, data.name)}/edit`}>
              Edit and share
            </a>
            <a
              class="button primary"
              href={`/upload?owner=${encodeURIComponent(data.owner)}&image=${encodeURIComponent(data.name)}`}
            >
              Upload a new version
            </a>
          </div>
        )}
      </div>
      {data.description && <p class="lead">{data.description}</p>}
      <Details image={data} />
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
            {(['sha256', 'sha512', 'md5'] as const).map((algorithm) => {
              const value = image.digests?.[algorithm];
              return value ? (
                <div key={algorithm}>
                  <dt>{algorithm.toUpperCase()}</dt>
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
  const cert = '--cert ~/.globus/usercert.pem --key ~/.globus/userkey.pem';
  const commands: [string, string][] = [
    ['repoman', `repoman get-image ${shellQuote(`${image.owner}/${image.name}`)}`],
    ['curl', open ? `curl -fL -o ${file} ${open}` : `curl -fL ${cert} -o ${file} ${https}`],
    [
      'wget',
      open
        ? `wget -O ${file} ${open}`
        : `wget --certificate ~/.globus/usercert.pem --private-key ~/.globus/userkey.pem -O ${file} ${https}`,
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
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState<number | null>(null);
  const rollback = async (version: number) => {
    setBusy(version);
    setError(null);
    try {
      await call(api.POST('/api/images/{user}/{image}/rollback', { params: { path }, body: { version } }));
      onChange();
      versions.reload();
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(null);
    }
  };
  return (
    <>
      <h2>Versions</h2>
      <ErrorBox error={versions.error ?? error} />
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
                  <td class="actions">
                    <a class="button small" href={v.file_url} download={image.name}>
                      Download<span class="visually-hidden"> version {v.version}</span>
                    </a>
                    {changeable && !v.current && (
                      <button
                        type="button"
                        class="small"
                        disabled={busy !== null}
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
    </>
  );
}
