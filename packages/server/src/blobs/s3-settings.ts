/**
 * What the S3 store is configured with: the shape config.ts fills in and blobs/s3.ts reads, kept apart from the
 * store so that reading the configuration does not load the object store's SDK.
 */
export interface S3Settings {
  /** The service's URL; absent for AWS itself (the region then decides). */
  endpoint: string | undefined;
  region: string;
  bucket: string;
  /** Put in front of every object name, so that one bucket can hold several repositories. */
  prefix: string;
  /** `https://host/bucket/key` rather than `https://bucket.host/key` (most non-AWS services). */
  pathStyle: boolean;
  /** Credentials; when absent, the SDK's usual chain (`AWS_ACCESS_KEY_ID`, profiles, instance roles). */
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
  /** Size of an upload's parts (S3: 5 MiB at least); parts double every 1000 so that 10 000 reach far. */
  partSize: number;
  /** Make the bucket at start-up if it does not exist. */
  createBucket: boolean;
  /** At most this many connections to the service at once. */
  maxSockets: number;
}
