// A Key Vault of its own for the webhook signing secrets the app generates (one secret per endpoint, named on
// the endpoint's record; the secret itself never reaches Table Storage). The app's identity is Key Vault Secrets
// Officer here (it writes and deletes these secrets), and only Secrets User on the main vault, so it can never
// change the Partner Center client secrets. RBAC only; soft delete on (each endpoint's secret has a new name, so
// re-creating an endpoint never collides with a soft-deleted secret).

param name string
param location string
param tags object

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    publicNetworkAccess: 'Enabled'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
