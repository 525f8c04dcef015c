import { modelFuzzSuite } from './model-fuzz-suite.ts';

modelFuzzSuite('sqlite', Number(process.env.FUZZ_RUNS ?? 40));
