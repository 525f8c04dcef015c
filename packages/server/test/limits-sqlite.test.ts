import { limitsSuite } from './limits-suite.ts';

limitsSuite('sqlite');
