import { capabilitiesSuite } from './capabilities-suite.ts';

capabilitiesSuite('sqlite');
