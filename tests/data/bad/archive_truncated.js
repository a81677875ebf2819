window.YTD.following.part0 = [
  { "following" : { "accountId" : "1" } },
  { "following" : { "acc