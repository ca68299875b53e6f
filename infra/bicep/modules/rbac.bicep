// Role assignments. The app's managed identity gets data-plane roles only: blob, queue and table data on
// the storage account (host storage, generated files, user-delegation SAS, queue, status tables), Monitoring
// Metrics Publisher on Application Insights (Entra-authenticated telemetry), Key Vault Secrets User on
// the vault (Key Vault references) and Key Vault Secrets Officer on the webhook vault only (it creates and deletes
// the webhook signing secrets). The deploying user, when given, gets the storage data roles (to look
// at files, queues and tables, or run the app against the account) and Key Vault Secrets Officer (to add
// Partner Center client secrets, and so that azd can read the signing key back on the next provision).
// Assignment names are guid(scope, principal, role): stable, so re-provisioning is idempotent.

param storageAccountName string
param applicationInsightsName string
param keyVaultName string
@description('The vault of the webhook signing secrets, where the app writes them.')
param webhookVaultName string
param identityPrincipalId string

@description('Object id of the deploying user or service principal; empty to skip its assignments.')
param userPrincipalId string = ''

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
}
var storageRoleIds = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource identityStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in storageRoleIds: {
  name: guid(storage.id, identityPrincipalId, roleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

resource identityMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identityPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource identitySecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identityPrincipalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource webhookVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: webhookVaultName
}

resource identityWebhookSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(webhookVault.id, identityPrincipalId, roles.keyVaultSecretsOfficer)
  scope: webhookVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// principalType is left out for the deploying principal: it may be a user or a service principal (CI).
resource userStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in (empty(userPrincipalId) ? [] : storageRoleIds): {
  name: guid(storage.id, userPrincipalId, roleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: userPrincipalId
  }
}]

resource userSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(vault.id, userPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: userPrincipalId
  }
}
