/** Where a content item lives on Connect: its content URL (with a trailing slash), dashboard and logs. */
export function urlsFor(
  server: string,
  guid: string,
  content: {content_url?: string | null; dashboard_url?: string | null},
) {
  const base = server.endsWith('/') ? server : `${server}/`
  const contentUrl = content.content_url ?? `${base}content/${guid}/`
  const dashboardUrl = content.dashboard_url ?? `${base}connect/#/apps/${guid}`
  return {
    contentUrl: contentUrl.endsWith('/') ? contentUrl : `${contentUrl}/`,
    dashboardUrl,
    logsUrl: `${dashboardUrl}/logs`,
  }
}

/** The content's URL by GUID (`/content/{guid}/`), or a draft preview's (`/content/{guid}/_bundle{id}/`), as
 * rsconnect builds it: never a vanity path, so a vanity (or a change of it) never changes what is verified. */
export function previewUrl(server: string, guid: string, bundleId?: string): string {
  const base = server.endsWith('/') ? server : `${server}/`
  return `${base}content/${guid}/${bundleId ? `_bundle${bundleId}/` : ''}`
}
