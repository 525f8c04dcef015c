import { expirySuite, uploadsSuite } from './uploads-suite.ts';

uploadsSuite('sqlite');
expirySuite('sqlite');
