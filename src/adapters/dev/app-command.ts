/** Requests one python-api process serves at once: Connect's max_conns_per_process default. */
export const WSGI_THREADS = 20

/**
 * How long gunicorn keeps an idle connection open (seconds): uvicorn's default. gunicorn's own (2 s) is shorter than
 * the idle time of the clients' pools (Node's fetch keeps a socket 4 s), so a client could send a request on a
 * connection at the moment gunicorn closed it, and the request failed with a reset. A client closes first now.
 */
export const WSGI_KEEP_ALIVE_SECONDS = 5

/**
 * How Connect-like hosts start the extension: an ASGI server (uvicorn) for python-fastapi content, a threaded WSGI
 * server (gunicorn's gthread worker, 20 threads) for python-api content, one process, on 127.0.0.1. Connect sends a
 * process up to max_conns_per_process (20) requests at once, so a single-threaded host would hide what concurrency
 * does. Shared by `dev up` and the test suite's fake Connect.
 */
export function appCommand(appMode: string, port: number): string[] {
  return appMode === 'python-fastapi'
    ? ['-m', 'uvicorn', 'app:app', '--host', '127.0.0.1', '--port', String(port), '--workers', '1']
    : [
        '-m',
        'gunicorn',
        '--bind',
        `127.0.0.1:${port}`,
        '--workers',
        '1',
        '--worker-class',
        'gthread',
        '--threads',
        String(WSGI_THREADS),
        '--timeout',
        '300',
        '--keep-alive',
        String(WSGI_KEEP_ALIVE_SECONDS),
        'app:app',
      ]
}
