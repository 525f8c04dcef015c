/**
 * The concurrency suite again, on a server of two worker processes sharing one SQLite file (src/cluster.ts):
 * writers in different processes take the database's one write lock in turn, and none is told it is locked.
 */
import { concurrencySuite } from './concurrency-suite.ts';
import { useWorkers } from './helpers/server.ts';

useWorkers(2);
concurrencySuite('sqlite');
