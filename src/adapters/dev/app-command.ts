/**
 * How Connect-like hosts start the extension: an ASGI server for python-fastapi content, a WSGI server
 * for python-api content, one process, on 127.0.0.1. Shared by `dev up` and the test suite's fake Connect.
 */
export function appCommand(appMode: string, port: number): string[] {
  return appMode === 'python-fastapi'
    ? ['-m', 'uvicorn', 'app:app', '--host', '127.0.0.1', '--port', String(port), '--workers', '1']
    : ['-m', 'gunicorn', '--bind', `127.0.0.1:${port}`, '--workers', '1', '--timeout', '300', 'app:app']
}
