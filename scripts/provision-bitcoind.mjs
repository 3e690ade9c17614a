console.log('provision placeholder')
