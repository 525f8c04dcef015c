import { modelFuzzSuite } from './model-fuzz-suite.ts';

modelFuzzSuite('postgres', Number(process.env.FUZZ_RUNS ?? 40));
