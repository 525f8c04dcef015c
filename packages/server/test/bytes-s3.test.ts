import { bytesSuite } from './bytes-suite.ts';

// Several servers share a repository on PostgreSQL and an object store: the byte tests again on Swift's S3 API.
bytesSuite('postgres', 's3');
