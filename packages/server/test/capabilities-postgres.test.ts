import { capabilitiesSuite } from './capabilities-suite.ts';

capabilitiesSuite('postgres');
