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
