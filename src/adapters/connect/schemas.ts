import {z} from 'zod'

/** Response shapes of Connect's API; unknown fields pass through, missing required ones are errors. */
export const userSchema = z
  .object({
    guid: z.string(),
    username: z.string(),
    user_role: z.string(),
    locked: z.boolean().optional(),
    confirmed: z.boolean().optional(),
  })
  .passthrough()

export const serverSettingsSchema = z.object({version: z.string().nullish()}).passthrough()

/** GET server_settings/scheduler/{app_mode}: the defaults Connect starts such content with. */
export const schedulerSettingsSchema = z.object({init_timeout: z.number().nullish()}).passthrough()

export const contentSchema = z
  .object({
    guid: z.string(),
    name: z.string().nullish(),
    title: z.string().nullish(),
    app_mode: z.string().nullish(),
    bundle_id: z.string().nullish(),
    min_processes: z.number().nullish(),
    max_processes: z.number().nullish(),
    init_timeout: z.number().nullish(),
    locked: z.boolean().nullish(),
    content_url: z.string().nullish(),
    dashboard_url: z.string().nullish(),
    app_role: z.string().nullish(),
    owner_guid: z.string().nullish(),
  })
  .passthrough()

/** GET v1/content?include=tags,owner: what the key may see, with each item's tags and owner. */
export const contentListSchema = z.array(
  contentSchema.extend({
    tags: z.array(z.object({id: z.union([z.string(), z.number()]), name: z.string()}).passthrough()).nullish(),
    owner: z.object({guid: z.string().nullish(), username: z.string().nullish()}).passthrough().nullish(),
  }),
)

export const tagListSchema = z.array(
  z.object({id: z.union([z.string(), z.number()]), name: z.string(), parent_id: z.unknown().optional()}).passthrough(),
)

/** GET applications/{guid}/variants (unversioned, experimental): a rendered item's variants. */
export const variantListSchema = z.array(
  z.object({id: z.number(), app_id: z.number(), is_default: z.boolean().optional()}).passthrough(),
)

/** A render schedule (unversioned, experimental API); `schedule` is a JSON string such as {"N":1}. */
export const scheduleSchema = z
  .object({id: z.number(), type: z.string(), schedule: z.string(), app_id: z.number(), variant_id: z.number()})
  .passthrough()

export const bundleSchema = z
  .object({
    id: z.string(),
    content_guid: z.string().optional(),
    active: z.boolean().optional(),
    created_time: z.string().optional(),
  })
  .passthrough()

/** A bundle list: a bare array (2023.09 spec, older servers) or a page {results, current_page, total}. */
export const bundlePageSchema = z.union([
  bundleSchema.array(),
  z
    .object({results: bundleSchema.array(), current_page: z.number().optional(), total: z.number().optional()})
    .passthrough(),
])

export const taskRefSchema = z.object({task_id: z.string()}).passthrough()

export const taskSchema = z
  .object({
    id: z.string(),
    output: z.array(z.string()).default([]),
    last: z.number().default(0),
    finished: z.boolean(),
    code: z.number().default(0),
    error: z.string().nullish(),
  })
  .passthrough()

export const environmentNamesSchema = z.array(z.string())

export const vanitySchema = z.object({content_guid: z.string().optional(), path: z.string()}).passthrough()

export const associationsSchema = z.array(z.object({oauth_integration_guid: z.string()}).passthrough())

export const connectErrorSchema = z
  .object({code: z.number().optional(), error: z.string().optional(), payload: z.unknown().optional()})
  .passthrough()

export type ConnectUser = z.infer<typeof userSchema>
export type ConnectContent = z.infer<typeof contentSchema>
export type ConnectContentListing = z.infer<typeof contentListSchema>[number]
export type ConnectBundle = z.infer<typeof bundleSchema>
export type ConnectTask = z.infer<typeof taskSchema>
