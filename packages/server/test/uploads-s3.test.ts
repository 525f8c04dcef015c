import { uploadsSuite } from './uploads-suite.ts';

// Resumable uploads whose bytes go to an object store (Swift's S3 API), shared by two servers on PostgreSQL.
uploadsSuite('postgres', 's3');
