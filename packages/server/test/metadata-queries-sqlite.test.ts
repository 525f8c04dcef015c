import { metadataQueriesSuite } from './metadata-queries-suite.ts';

metadataQueriesSuite('sqlite');
