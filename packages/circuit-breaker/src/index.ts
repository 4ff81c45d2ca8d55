export {
  createCircuitBreaker,
  type BreakerClock,
  type BreakerPermit,
  type BreakerState,
  type BreakerStats,
  type CircuitBreaker,
  type CircuitBreakerOptions,
} from './circuit-breaker.js';
