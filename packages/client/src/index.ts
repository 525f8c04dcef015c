/** The `repoman` client: not written yet (its own issue). It will share error codes and types with @repoman/core. */
export {};
