// Key Vault for the app's secrets: the continuation-token signing key (created here) and the Partner Center
// client secrets of each registered tenant (added by an operator with `az keyvault secret set`, see
// docs/deploy.md). Access is by Azure RBAC only (no access policies); soft delete keeps deleted secrets
// recoverable for 90 days. The app reads secrets through Key Vault references in its app settings.

param name string
param location string
param tags object

@secure()
@description('Value of the continuation-token signing key.')
param tokenSigningKey string

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

resource tokenSigningKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'token-signing-key'
  properties: {
    value: tokenSigningKey
    contentType: 'text/plain'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
@description('Versionless URI of the signing key secret, so a Key Vault reference always reads the latest version.')
output tokenSigningKeyUri string = tokenSigningKeySecret.properties.secretUri
