// Entry point of `azd provision` / `azd up`: the CSP reconciliation function app and everything it uses.
// Subscription scope, like the azd Flex Consumption quickstarts, so that one command also creates the
// resource group (rg-<environment>) and `azd down` removes it all. The modules under ./modules are plain
// resource declarations (no registry modules), so the templates can be checked offline (tests/test_infra.py).
// With the host settings added in modules/function-app.bicep, the app settings below cover every setting
// shared/adapters/settings.py reads; tests/test_infra.py keeps the two in step.

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; resource names are derived from it.')
param environmentName string

@minLength(1)
@description('Region for all resources. It must offer Flex Consumption: az functionapp list-flexconsumption-locations')
@metadata({ azd: { type: 'location' } })
param location string

@description('Object id of the deploying user or service principal (azd sets AZURE_PRINCIPAL_ID); empty to skip its role assignments.')
param principalId string = ''

@description('Resource group name; default rg-<environment>.')
param resourceGroupName string = ''

@description('Highest number of instances the function app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Partner Center REST API base URL (change only for another cloud or a test server).')
param partnerCenterApiUrl string = 'https://api.partnercenter.microsoft.com'

@description('Microsoft Graph base URL (partner billing exports).')
param graphApiUrl string = 'https://graph.microsoft.com'

@description('Entra ID authority host used to get tokens for the partner tenants (by default, the one of the current cloud).')
param entraAuthorityHost string = environment().authentication.loginEndpoint

@description('Partner Center client secrets: each entry adds the app setting settingName as a Key Vault reference to the secret secretName. Register a tenant with clientSecretSetting = settingName.')
param tenantSecretSettings tenantSecretSetting[] = []

@description('Sign-in: the API app registration\'s audiences, comma-separated (its client id and api:// URI).')
param authAudiences string

@description('Sign-in: the partner tenant ids whose Entra tokens are accepted, comma-separated.')
param authAllowedTenants string

@description('Web front end sign-in (public values): the SPA app registration\'s client id; empty: sign-in not configured.')
param webClientId string = ''

@description('Web front end sign-in: the authority, https://login.microsoftonline.com/<partner tenant id>.')
param webAuthority string = ''

@description('Web front end sign-in: the API scope the page asks for, api://<API client id>/access_as_user.')
param webApiScope string = ''

@secure()
@minLength(12)
@description('Continuation-token signing key, stored in Key Vault. azd reads it back from the vault, or generates one on the first provision (main.parameters.json).')
param tokenSigningKey string

type tenantSecretSetting = {
  settingName: string
  secretName: string
}

var abbrs = {
  resourceGroup: 'rg-'
  managedIdentity: 'id-'
  logAnalytics: 'log-'
  applicationInsights: 'appi-'
  storageAccount: 'st'
  keyVault: 'kv-'
  appServicePlan: 'plan-'
  functionApp: 'func-'
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var keyVaultName = '${abbrs.keyVault}${resourceToken}'
var webhookVaultName = 'kvwh-${resourceToken}'

// Names the code expects (the defaults in shared/adapters/settings.py); the app settings pass the same values.
var deploymentContainerName = 'app-package'
var filesContainerName = 'reconciliation-files'
var generationQueueName = 'reconciliation-requests'
var webhookQueueName = 'webhook-deliveries'
var tablePrefix = 'recon'
var tableNames = [for table in ['Tenants', 'Files', 'FileVersions', 'Invoices', 'MarginRules', 'Identifiers', 'Principals', 'Audit', 'ResellerReach', 'Exports', 'Names', 'RequestQuotas', 'Webhooks', 'Deliveries', 'Secrets', 'Budgets', 'Alerts', 'CallBudget', 'Snapshots', 'FileParts']: '${tablePrefix}${table}']

resource rg 'Microsoft.Resources/resourceGroups@2021-04-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourceGroup}${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentity}${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.logAnalytics}${resourceToken}'
    applicationInsightsName: '${abbrs.applicationInsights}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageAccount}${resourceToken}'
    location: location
    tags: tags
    containerNames: [
      deploymentContainerName
      filesContainerName
    ]
    queueNames: [
      generationQueueName
      '${generationQueueName}-poison'
      '${generationQueueName}-exports'
      '${generationQueueName}-exports-poison'
      webhookQueueName
      '${webhookQueueName}-poison'
    ]
    tableNames: tableNames
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: keyVaultName
    location: location
    tags: tags
    tokenSigningKey: tokenSigningKey
  }
}

module webhookVault 'modules/webhook-vault.bicep' = {
  name: 'webhook-vault'
  scope: rg
  params: {
    name: webhookVaultName
    location: location
    tags: tags
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    webhookVaultName: webhookVault.outputs.name
    identityPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
  }
}

// Every app setting shared/adapters/settings.py reads, except the identity-based storage and telemetry settings
// that modules/function-app.bicep adds. The tuning values start as the code defaults; tune them here.
var appSettings = union({
  FILES_CONTAINER: filesContainerName
  GENERATION_QUEUE: generationQueueName
  TABLE_PREFIX: tablePrefix
  DOWNLOAD_LINK_MINUTES: '15'
  MAX_DEQUEUE_COUNT: '5'
  PARTNER_CENTER_API_URL: partnerCenterApiUrl
  GRAPH_API_URL: graphApiUrl
  ENTRA_AUTHORITY_HOST: entraAuthorityHost
  ONETIME_GRAPH_FROM: '2024-02-01'
  DAILY_USAGE_GRAPH_FROM: '2022-09-01'
  PC_MAX_CONCURRENCY: '4'
  PC_TENANT_CONCURRENCY: '8'
  PC_LEASE_SECONDS: '60'
  PC_SLOT_WAIT_SECONDS: '300'
  PC_MAX_RETRIES: '8'
  PC_RETRY_BUDGET_SECONDS: '300'
  PC_BACKOFF_BASE_SECONDS: '1'
  PC_BACKOFF_CAP_SECONDS: '60'
  PC_TIMEOUT_SECONDS: '60'
  EXPORT_POLL_SECONDS: '5'
  EXPORT_MAX_WAIT_SECONDS: '1800'
  BLOCK_SIZE_BYTES: '4194304'
  FANOUT_MIN_PARTS: '2'
  FANOUT_PARTS_AT_ONCE: '1'
  VALIDATION_BLOCKS: 'false'
  VALIDATION_CHANGE_THRESHOLD_PERCENT: '50'
  VALIDATION_MAX_FINDINGS: '10000'
  INVOICE_POLL_SCHEDULE: '0 0 */6 * * *'
  RETENTION_SCHEDULE: '0 30 3 * * *'
  REVISION_WINDOW_DAYS: '15'
  FOLLOW_REVISIONS: 'true'
  RETENTION_DAYS: '400'
  TRANSIENT_RETRY_CAP: '5'
  FILE_REQUESTS_PER_HOUR: '60'
  AUTH_AUDIENCES: authAudiences
  AUTH_ALLOWED_TENANTS: authAllowedTenants
  WEB_CLIENT_ID: webClientId
  WEB_AUTHORITY: webAuthority
  WEB_API_SCOPE: webApiScope
  AUTH_JWKS_TTL_SECONDS: '3600'
  AUTH_LEEWAY_SECONDS: '120'
  TOKEN_SIGNING_KEY: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.tokenSigningKeyUri})'
  WEBHOOK_QUEUE: webhookQueueName
  WEBHOOK_TIMEOUT_SECONDS: '10'
  WEBHOOK_RETRY_BASE_SECONDS: '10'
  WEBHOOK_RETRY_FACTOR: '3'
  WEBHOOK_RETRY_CAP_SECONDS: '21600'
  WEBHOOK_RETRY_WINDOW_SECONDS: '86400'
  WEBHOOK_KEY_VAULT_URL: webhookVault.outputs.uri
}, toObject(tenantSecretSettings, s => s.settingName, s => '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${s.secretName})'))

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  // The identity's roles must exist before the app starts (deployment package, host storage, Key Vault references).
  dependsOn: [
    rbac
  ]
  params: {
    name: '${abbrs.functionApp}${resourceToken}'
    planName: '${abbrs.appServicePlan}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    maximumInstanceCount: maximumInstanceCount
    appSettings: appSettings
  }
}

// Read by azd (written to .azure/<env>/.env) and by docs/deploy.md. Names only: no key, secret or connection string.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_FILES_CONTAINER string = filesContainerName
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URI string = keyVault.outputs.uri
output AZURE_USER_ASSIGNED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output AZURE_LOG_ANALYTICS_WORKSPACE_NAME string = monitoring.outputs.logAnalyticsName
